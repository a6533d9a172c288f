/**
 * Jobs that fail, against a real server and a real PostgreSQL: a chunk whose INSERT the database
 * refuses (a trigger in the test's own database refuses rows of one experiment) is retried with
 * backoff, then fails its job with the error kept; a cohort deleted under a running job fails it
 * at once, naming the cohort. And jobs on the embedded PGlite (pg-boss in process over PGlite).
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  JobKind,
  JobService,
  JobState,
  type Client,
  type Job,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer } from "../../src/server.js";
import { specVariant } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const AB = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

async function upload(cohorts: Client<typeof CohortService>, name: string, ids: string[]) {
  async function* messages() {
    yield { setup: { name }, unitIds: ids.slice(0, 10_000) };
    for (let i = 10_000; i < ids.length; i += 10_000) yield { unitIds: ids.slice(i, i + 10_000) };
  }
  await cohorts.uploadCohort(messages());
}

async function finished(jobs: Client<typeof JobService>, id: string): Promise<Job> {
  let last: Job | undefined;
  for await (const m of jobs.watchJob({ id }, { timeoutMs: 300_000 })) last = m.job;
  return last!;
}

describe("on PostgreSQL", () => {
  let t: TestServer;
  let cohorts: Client<typeof CohortService>;
  let jobs: Client<typeof JobService>;
  let db: pg.Client;
  beforeAll(async () => {
    t = await startTestServer({ jobs: { chunkUnits: 500, retryLimit: 2, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5 } });
    cohorts = createClient(CohortService, t.server.address, { timeoutMs: 60_000 });
    jobs = createClient(JobService, t.server.address, { timeoutMs: 60_000 });
    db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
  });
  afterAll(async () => {
    cohorts?.close();
    jobs?.close();
    await db?.end();
    await t?.stop();
  });

  it("a chunk the database keeps refusing is retried, then fails the job with the error kept", async () => {
    await t.experiments.createExperiment({ key: "refused", variants: AB, status: ExperimentStatus.RUNNING });
    const { rows } = await db.query("SELECT id FROM experiments WHERE key = 'refused'");
    await db.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.experiment_id = ${Number(rows[0].id)} THEN RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END $$`);
    await db.query("CREATE TRIGGER refuse BEFORE INSERT ON assignments FOR EACH ROW EXECUTE FUNCTION refuse()");
    await upload(
      cohorts,
      "refused-units",
      Array.from({ length: 800 }, (_, i) => `r-${i}`),
    );
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "refused-units", experimentKeys: ["refused"] } });
    const last = await finished(jobs, job!.id);
    expect(last.state).toBe(JobState.FAILED);
    expect(last.error).toMatch(/^chunk [01] failed after its retries: refused by the test trigger$/);
    expect(last.processedUnits).toBe(0n);
    // Three attempts (the first and two retries) of each chunk, as pg-boss recorded them.
    const attempts = await db.query(
      "SELECT (data->>'chunk')::int AS chunk, retry_count FROM pgboss.job WHERE name = 'assignment-job-chunks' AND data->>'jobId' = $1 UNION ALL SELECT (data->>'chunk')::int, retry_count FROM pgboss.archive WHERE name = 'assignment-job-chunks' AND data->>'jobId' = $1",
      [job!.id],
    );
    expect(attempts.rows.some((r) => r.retry_count === 2)).toBe(true);
    const stored = await db.query("SELECT count(*)::int AS n FROM assignments WHERE experiment_id = $1", [rows[0].id]);
    expect(stored.rows[0].n).toBe(0);
    await db.query("DROP TRIGGER refuse ON assignments");
  });

  it("a cohort deleted while its job runs fails the job at once, naming the cohort", async () => {
    await t.experiments.createExperiment({ key: "gone", variants: AB, status: ExperimentStatus.RUNNING });
    await upload(
      cohorts,
      "short-lived",
      Array.from({ length: 40_000 }, (_, i) => `g-${i}`),
    );
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "short-lived", experimentKeys: ["gone"] } });
    await cohorts.deleteCohort({ name: "short-lived" });
    const last = await finished(jobs, job!.id);
    expect([last.state, last.error]).toEqual([JobState.FAILED, 'cohort "short-lived" was deleted while the job ran']);
  });
});

describe("on the embedded PGlite", () => {
  it("runs an assign job in process", async () => {
    const server = await startServer({
      pgliteDataDir: "memory://",
      port: 0,
      memoryCacheEntries: 10_000,
      logger: createLogger("silent"),
      jobs: { chunkUnits: 300, pollingIntervalSeconds: 0.5 },
    });
    const cohorts = createClient(CohortService, server.address, { timeoutMs: 60_000 });
    const jobs = createClient(JobService, server.address, { timeoutMs: 60_000 });
    const admin = createClient(ExperimentService, server.address, { timeoutMs: 60_000 });
    try {
      await admin.createExperiment({ key: "lite", variants: AB, status: ExperimentStatus.RUNNING });
      const ids = Array.from({ length: 1_000 }, (_, i) => `lite-${i}`);
      await upload(cohorts, "lite-units", ids);
      const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "lite-units", experimentKeys: ["lite"] } });
      const last = await finished(jobs, job!.id);
      expect([last.state, last.processedUnits, last.enrolled, last.chunksDone]).toEqual([JobState.DONE, 1_000n, 1_000n, 4]);
      const stored = new Map<string, string>();
      for await (const m of admin.exportAssignments({ experimentKey: "lite" }))
        m.unitIds.forEach((u, i) => stored.set(u, m.legend[m.variantIndexes[i]!]!));
      expect(stored).toEqual(new Map(ids.map((u) => [u, specVariant(u, "lite", AB)])));
    } finally {
      cohorts.close();
      jobs.close();
      admin.close();
      await server.close();
    }
  });
});
