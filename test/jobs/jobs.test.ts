/**
 * JobService through a real gRPC client against a real server (PostgreSQL, Redis, pg-boss): an
 * assign job stores exactly what SPEC.md's formulas give for every unit of the cohort, once;
 * a warm job stores nothing; bad input is refused naming it; a cancelled job runs no more chunks.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CohortService,
  createClient,
  type ExperimentService,
  ExperimentStatus,
  JobKind,
  JobService,
  JobState,
  type Client,
  type Job,
} from "assignment-client";
import { failure, specInRollout, specVariant, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const AB = [
  { key: "control", weight: 5000 },
  { key: "green", weight: 3000 },
  { key: "blue", weight: 2000 },
];

let t: TestServer;
let cohorts: Client<typeof CohortService>;
let jobs: Client<typeof JobService>;
let admin: Client<typeof ExperimentService>;

async function uploadIds(name: string, ids: string[], unitType = "") {
  async function* messages() {
    yield { setup: { name, unitType }, unitIds: ids.slice(0, 10_000) };
    for (let i = 10_000; i < ids.length; i += 10_000) yield { unitIds: ids.slice(i, i + 10_000) };
  }
  return cohorts.uploadCohort(messages());
}

/** Watches a job until it is done, failed or cancelled; returns every message's job. */
async function watch(id: string): Promise<{ seen: Job[]; rates: number[] }> {
  const seen: Job[] = [];
  const rates: number[] = [];
  for await (const m of jobs.watchJob({ id }, { timeoutMs: 300_000 })) {
    seen.push(m.job!);
    rates.push(m.unitsPerSecond);
  }
  return { seen, rates };
}

beforeAll(async () => {
  t = await startTestServer({ jobs: { chunkUnits: 1_000, pollingIntervalSeconds: 0.5 } });
  cohorts = createClient(CohortService, t.server.address, { timeoutMs: 60_000 });
  jobs = createClient(JobService, t.server.address, { timeoutMs: 60_000 });
  admin = t.experiments;
  await admin.createExperiment({ key: "hp-a", variants: AB, rollout: 5000, status: ExperimentStatus.RUNNING, tags: ["homepage"] });
  await admin.createExperiment({ key: "hp-b", variants: AB, status: ExperimentStatus.RUNNING, tags: ["homepage"] });
  await admin.createExperiment({ key: "other", variants: AB, status: ExperimentStatus.RUNNING, tags: ["checkout"] });
  await admin.createExperiment({ key: "devices", variants: AB, unitType: "device_id", status: ExperimentStatus.RUNNING });
});
afterAll(async () => {
  cohorts?.close();
  jobs?.close();
  await t?.stop();
});

async function storedRows(experimentKey: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const m of admin.exportAssignments({ experimentKey })) {
    m.unitIds.forEach((u, i) => out.set(u, m.legend[m.variantIndexes[i]!]!));
  }
  return out;
}

describe("assign jobs", () => {
  it("assigns every unit of a cohort to every RUNNING experiment of a tag, as SPEC.md says, once", async () => {
    const ids = Array.from({ length: 12_345 }, (_, i) => `job-unit-${i}`);
    await uploadIds("expected-users", ids);
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "expected-users", tag: "homepage" } });
    expect(job?.spec?.experimentKeys).toEqual(["hp-a", "hp-b"]);
    expect(job?.totalUnits).toBe(12_345n);
    expect(job?.chunks).toBe(13);
    const { seen } = await watch(job!.id);
    const last = seen[seen.length - 1]!;
    expect(last.state).toBe(JobState.DONE);
    expect([last.processedUnits, last.chunksDone]).toEqual([12_345n, 13]);
    const expectedA = new Map(ids.filter((u) => specInRollout(u, "hp-a", 5000)).map((u) => [u, specVariant(u, "hp-a", AB)]));
    const expectedB = new Map(ids.map((u) => [u, specVariant(u, "hp-b", AB)]));
    expect(last.enrolled).toBe(BigInt(expectedA.size + expectedB.size));
    expect(await storedRows("hp-a")).toEqual(expectedA);
    expect(await storedRows("hp-b")).toEqual(expectedB);
    expect((await storedRows("other")).size).toBe(0);
    // Progress went up monotonically and ended at the total.
    const processed = seen.map((j) => Number(j.processedUnits));
    expect([...processed].sort((a, b) => a - b)).toEqual(processed);
    const got = await jobs.getJob({ id: job!.id });
    expect(got.job?.state).toBe(JobState.DONE);
    expect(got.job?.createdBy).toBe("anonymous");
    const { jobs: listed } = await jobs.listJobs({});
    expect(listed.map((j) => j.id)).toContain(job!.id);
  });

  it("a second assign job of the same cohort changes nothing stored (sticky) and counts the same", async () => {
    const before = await storedRows("hp-b");
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "expected-users", experimentKeys: ["hp-b"] } });
    const { seen } = await watch(job!.id);
    const last = seen[seen.length - 1]!;
    expect(last.state).toBe(JobState.DONE);
    expect(last.enrolled).toBe(12_345n);
    expect(await storedRows("hp-b")).toEqual(before);
  });

  it("a warm job finds what is stored and stores nothing", async () => {
    const { job: warmed } = await jobs.startJob({ spec: { kind: JobKind.WARM, cohort: "expected-users", experimentKeys: ["hp-b"] } });
    const w = (await watch(warmed!.id)).seen.at(-1)!;
    expect([w.state, w.processedUnits, w.enrolled]).toEqual([JobState.DONE, 12_345n, 12_345n]);
    const ids = Array.from({ length: 2_500 }, (_, i) => `warm-unit-${i}`);
    await uploadIds("warm-users", ids);
    const { job } = await jobs.startJob({ spec: { kind: JobKind.WARM, cohort: "warm-users", experimentKeys: ["other"] } });
    const { seen } = await watch(job!.id);
    const last = seen[seen.length - 1]!;
    expect([last.state, last.processedUnits, last.enrolled]).toEqual([JobState.DONE, 2_500n, 0n]);
    expect((await storedRows("other")).size).toBe(0);
  });
});

describe("bad input", () => {
  it("is refused naming what is wrong, and records no job", async () => {
    await uploadIds("devices-cohort", ["d-1", "d-2"], "device_id");
    const before = (await jobs.listJobs({})).jobs.length;
    const cases: [object, number, string][] = [
      [{ kind: JobKind.ASSIGN, cohort: "nope", experimentKeys: ["hp-a"] }, status.NOT_FOUND, 'spec.cohort: no cohort "nope"'],
      [
        { kind: JobKind.ASSIGN, cohort: "expected-users", experimentKeys: ["hp-a", "ghost"] },
        status.NOT_FOUND,
        'spec.experiment_keys[1]: no experiment "ghost"',
      ],
      [{ kind: JobKind.ASSIGN, cohort: "devices-cohort", experimentKeys: ["hp-a"] }, status.FAILED_PRECONDITION, "unit type user_id"],
      [
        { kind: JobKind.ASSIGN, cohort: "expected-users", experimentKeys: ["devices"] },
        status.FAILED_PRECONDITION,
        'experiment "devices" has unit type device_id',
      ],
      [
        { kind: JobKind.ASSIGN, cohort: "expected-users", tag: "nothing-tagged" },
        status.FAILED_PRECONDITION,
        'spec.tag: no RUNNING experiment of unit type user_id has tag "nothing-tagged"',
      ],
      [{ kind: JobKind.ASSIGN, cohort: "expected-users" }, status.INVALID_ARGUMENT, "spec.experiment_keys"],
      [{ cohort: "expected-users", experimentKeys: ["hp-a"] }, status.INVALID_ARGUMENT, "spec.kind"],
      [{ kind: JobKind.ASSIGN, cohort: "Bad!", experimentKeys: ["hp-a"] }, status.INVALID_ARGUMENT, "spec.cohort"],
    ];
    for (const [spec, code, text] of cases) {
      const f = await failure(jobs.startJob({ spec }));
      expect([f.code, f.details], JSON.stringify(spec)).toEqual([code, expect.stringContaining(text)]);
    }
    expect((await failure(jobs.getJob({ id: "not-a-uuid" }))).code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(jobs.getJob({ id: "00000000-0000-0000-0000-000000000000" }))).code).toBe(status.NOT_FOUND);
    expect((await jobs.listJobs({})).jobs.length).toBe(before);
  });

  it("an empty cohort is FAILED_PRECONDITION naming it", async () => {
    await cohorts.uploadCohort(
      (async function* () {
        yield { setup: { name: "empty" }, unitIds: [] };
      })(),
    );
    const f = await failure(jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "empty", experimentKeys: ["hp-a"] } }));
    expect([f.code, f.details]).toEqual([status.FAILED_PRECONDITION, 'spec.cohort: cohort "empty" is empty']);
  });
});

describe("cancel", () => {
  it("a cancelled job runs no further chunk", async () => {
    const ids = Array.from({ length: 60_000 }, (_, i) => `cancel-unit-${i}`);
    await uploadIds("to-cancel", ids);
    await admin.createExperiment({ key: "cancel-exp", variants: AB, status: ExperimentStatus.RUNNING });
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "to-cancel", experimentKeys: ["cancel-exp"] } });
    const { job: cancelled } = await jobs.cancelJob({ id: job!.id });
    expect(cancelled?.state).toBe(JobState.CANCELLED);
    // Give the workers time to take (and skip) every chunk, then check what was stored.
    const db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    try {
      for (let i = 0; i < 100; i++) {
        const { rows } = await db.query("SELECT count(*)::int AS n FROM pgboss.job WHERE data->>'jobId' = $1 AND state < 'completed'", [
          job!.id,
        ]);
        if (rows[0].n === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const done = (await jobs.getJob({ id: job!.id })).job!;
      expect(done.state).toBe(JobState.CANCELLED);
      const { rows } = await db.query(
        "SELECT count(*)::int AS n FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = 'cancel-exp'",
      );
      // At most the chunks already running when it was cancelled (two worker loops): 2 x 1,000 units.
      expect(rows[0].n).toBeLessThanOrEqual(2_000);
      expect(done.processedUnits).toBeLessThanOrEqual(2_000n);
    } finally {
      await db.end();
    }
  });
});
