/**
 * A schedule firing every minute, across two replicas (real server processes, both running jobs
 * and pg-boss's scheduler, on one PostgreSQL), for five minutes, starts exactly five jobs: one per
 * tick, each in a minute of its own. Slow by nature (about five minutes).
 *
 * A schedule made within a minute's first 30 s fires for that minute's tick at once (pg-boss sends
 * a tick less than a minute old); so made at m:00–m:30 and deleted at (m+4):50, it fires for
 * m, m+1, m+2, m+3 and m+4.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CohortService, createClient, ExperimentService, ExperimentStatus, JobKind, JobService, JobState } from "assignment-client";
import type { FreshDatabase } from "../../harness/databases.js";
import { spawnServer, type ServerProcess } from "../../harness/spawn-server.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";

let db: FreshDatabase;
let prefix: string;
const replicas: ServerProcess[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await freshDatabase();
  prefix = freshRedisPrefix();
  for (const n of [0, 1]) {
    replicas.push(
      await spawnServer({ label: `replica-${n}`, env: { DATABASE_URL: db.url, REDIS_URL: redisUrl(), REDIS_PREFIX: prefix, ROLE: "all" } }),
    );
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(replicas.map((p) => p.stop()));
  await flushPrefix(redisUrl(), prefix);
  await db?.drop();
}, 60_000);

describe("a schedule across two replicas", () => {
  it("every minute for five minutes: exactly five jobs, one per tick", { timeout: 420_000 }, async () => {
    const [a, b] = replicas.map((r) => r.address) as [string, string];
    const admin = createClient(ExperimentService, a, { timeoutMs: 30_000 });
    const cohorts = createClient(CohortService, a, { timeoutMs: 30_000 });
    const jobsA = createClient(JobService, a, { timeoutMs: 30_000 });
    const jobsB = createClient(JobService, b, { timeoutMs: 30_000 });
    try {
      await admin.createExperiment({
        key: "ticked",
        variants: [{ key: "a", weight: 10_000 }],
        status: ExperimentStatus.RUNNING,
        tags: ["tick"],
      });
      await cohorts.uploadCohort(
        (async function* () {
          yield { setup: { name: "tick-units" }, unitIds: ["t-1", "t-2", "t-3"] };
        })(),
      );
      // Wait for a minute's first 30 s (the database's clock is this machine's).
      while (new Date().getSeconds() > 30) await sleep(1_000);
      const minute = Math.floor(Date.now() / 60_000);
      await jobsA.createSchedule({
        schedule: { name: "every-minute", cron: "* * * * *", spec: { kind: JobKind.ASSIGN, cohort: "tick-units", tag: "tick" } },
      });
      const deleteAt = (minute + 4) * 60_000 + 50_000;
      await sleep(deleteAt - Date.now());
      await jobsB.deleteSchedule({ name: "every-minute" });
      await sleep(15_000); // a late tick, if any, would have started by now

      const ticked = (await jobsB.listJobs({})).jobs.filter((j) => j.schedule === "every-minute");
      const minutes = ticked.map((j) => Math.floor(Number(j.createTime!.seconds) / 60)).sort();
      expect(minutes).toEqual([minute, minute + 1, minute + 2, minute + 3, minute + 4]);
      expect(ticked.every((j) => j.state === JobState.DONE && j.processedUnits === 3n)).toBe(true);
      // Both replicas were there to fire every tick; the ticks were shared out, not repeated.
      expect((await jobsA.listSchedules({})).schedules).toEqual([]);
    } finally {
      admin.close();
      cohorts.close();
      jobsA.close();
      jobsB.close();
    }
  });
});
