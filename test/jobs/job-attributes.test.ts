/**
 * Targeting in assign jobs, through a real gRPC client against a real server: a cohort uploaded
 * with per-unit attributes, and a job's attributes for every unit; each unit's own win key by key.
 * Only the units the condition admits are stored, with SPEC.md's variant; bad attributes are
 * refused naming them.
 */
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
import { expectFailure, specVariant, status, units } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const AB = [
  { key: "control", weight: 5000 },
  { key: "green", weight: 5000 },
];

let t: TestServer;
let cohorts: Client<typeof CohortService>;
let jobs: Client<typeof JobService>;

beforeAll(async () => {
  t = await startTestServer({ jobs: { chunkUnits: 1_000, pollingIntervalSeconds: 0.5 } });
  cohorts = createClient(CohortService, t.server.address, { timeoutMs: 60_000 });
  jobs = createClient(JobService, t.server.address, { timeoutMs: 60_000 });
  await t.experiments.createExperiment({
    key: "fr-only",
    variants: AB,
    status: ExperimentStatus.RUNNING,
    condition: 'attributes.country == "FR"',
  });
});
afterAll(async () => {
  cohorts?.close();
  jobs?.close();
  await t?.stop();
});

async function storedRows(experimentKey: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const m of t.experiments.exportAssignments({ experimentKey }))
    m.unitIds.forEach((u, i) => out.set(u, m.legend[m.variantIndexes[i]!]!));
  return out;
}

describe("assign jobs with attributes", () => {
  // Units 0..2499 carry their own country (odd: FR, even: DE); 2500..2999 none.
  const ids = units("geo-", 3_000);
  const own = (i: number) => (i % 2 ? "FR" : "DE");

  it("evaluate the condition with each unit's attributes laid over the job's", async () => {
    const r = await cohorts.uploadCohort(
      (async function* () {
        yield {
          setup: { name: "geo" },
          unitIds: ids.slice(0, 2_500),
          unitAttributes: ids.slice(0, 2_500).map((_, i) => ({ country: own(i) })),
        };
        yield { unitIds: ids.slice(2_500) };
      })(),
    );
    expect([r.cohort?.size, r.cohort?.hasAttributes]).toEqual([3_000n, true]);

    const { job } = await jobs.startJob({
      spec: { kind: JobKind.ASSIGN, cohort: "geo", experimentKeys: ["fr-only"], attributes: { country: "FR", plan: "pro" } },
    });
    expect(job?.spec?.attributes).toEqual({ country: "FR", plan: "pro" });
    let last: Job | undefined;
    for await (const m of jobs.watchJob({ id: job!.id }, { timeoutMs: 120_000 })) last = m.job;
    expect([last?.state, last?.error]).toEqual([JobState.DONE, ""]);

    const admitted = ids.filter((_, i) => i >= 2_500 || own(i) === "FR");
    const expected = new Map(admitted.map((u) => [u, specVariant(u, "fr-only", AB)]));
    expect(await storedRows("fr-only")).toEqual(expected);
    expect([last?.processedUnits, last?.enrolled]).toEqual([3_000n, BigInt(expected.size)]);
  });

  it("without the job's attributes, units with none are not targeted", async () => {
    await t.experiments.createExperiment({
      key: "fr-only-2",
      variants: AB,
      status: ExperimentStatus.RUNNING,
      condition: 'attributes.country == "FR"',
    });
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "geo", experimentKeys: ["fr-only-2"] } });
    let last: Job | undefined;
    for await (const m of jobs.watchJob({ id: job!.id }, { timeoutMs: 120_000 })) last = m.job;
    const admitted = ids.filter((_, i) => i < 2_500 && own(i) === "FR");
    expect(await storedRows("fr-only-2")).toEqual(new Map(admitted.map((u) => [u, specVariant(u, "fr-only-2", AB)])));
    expect(last?.enrolled).toBe(BigInt(admitted.length));
  });

  it("bad attributes are refused naming them", async () => {
    await expectFailure(
      cohorts.uploadCohort(
        (async function* () {
          yield { setup: { name: "geo-bad" }, unitIds: ["a", "b"], unitAttributes: [{ country: "FR" }] };
        })(),
      ),
      status.INVALID_ARGUMENT,
      "messages[0].unit_attributes: must hold one entry per unit id (2)",
    );
    await expectFailure(
      cohorts.uploadCohort(
        (async function* () {
          yield { setup: { name: "geo-bad" }, unitIds: ["a"], unitAttributes: [{ "bad-key": 1 }] };
        })(),
      ),
      status.INVALID_ARGUMENT,
      "messages[0].unit_attributes[0]",
    );
    await expectFailure(
      jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "geo", experimentKeys: ["fr-only"], attributes: { nested: { no: 1 } } } }),
      status.INVALID_ARGUMENT,
      "spec.attributes.nested",
    );
    await expectFailure(
      jobs.startJob({
        spec: {
          kind: JobKind.MIGRATE,
          sourceExperimentKey: "fr-only",
          targetExperimentKey: "fr-only-2",
          variantMapping: { control: "control" },
          attributes: { country: "FR" },
        },
      }),
      status.INVALID_ARGUMENT,
      "spec.attributes: must be empty for JOB_KIND_MIGRATE",
    );
    expect((await cohorts.listCohorts({})).cohorts.map((c) => c.name)).not.toContain("geo-bad");
  });
});

describe("on the embedded PGlite", () => {
  it("stores per-unit attributes and targets with them, in process", async () => {
    const server = await startServer({
      pgliteDataDir: "memory://",
      port: 0,
      memoryCacheEntries: 10_000,
      logger: createLogger("silent"),
      jobs: { chunkUnits: 300, pollingIntervalSeconds: 0.5 },
    });
    const c = createClient(CohortService, server.address, { timeoutMs: 60_000 });
    const j = createClient(JobService, server.address, { timeoutMs: 60_000 });
    const admin = createClient(ExperimentService, server.address, { timeoutMs: 60_000 });
    try {
      await admin.createExperiment({
        key: "lite-fr",
        variants: AB,
        status: ExperimentStatus.RUNNING,
        condition: 'attributes.country == "FR"',
      });
      const ids = units("lite-geo-", 1_000);
      const r = await c.uploadCohort(
        (async function* () {
          yield {
            setup: { name: "lite-geo" },
            unitIds: ids,
            unitAttributes: ids.map((_, i): Record<string, string> => (i % 2 ? { country: "FR" } : {})),
          };
        })(),
      );
      expect(r.cohort?.hasAttributes).toBe(true);
      const { job } = await j.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "lite-geo", experimentKeys: ["lite-fr"] } });
      let last: Job | undefined;
      for await (const m of j.watchJob({ id: job!.id }, { timeoutMs: 120_000 })) last = m.job;
      expect([last?.state, last?.enrolled]).toEqual([JobState.DONE, 500n]);
      const stored = new Map<string, string>();
      for await (const m of admin.exportAssignments({ experimentKey: "lite-fr" }))
        m.unitIds.forEach((u, i) => stored.set(u, m.legend[m.variantIndexes[i]!]!));
      expect(stored).toEqual(new Map(ids.filter((_, i) => i % 2).map((u) => [u, specVariant(u, "lite-fr", AB)])));
    } finally {
      c.close();
      j.close();
      admin.close();
      await server.close();
    }
  });
});
