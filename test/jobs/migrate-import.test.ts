/**
 * MIGRATE and IMPORT jobs through a real gRPC client against a real server (PostgreSQL, pg-boss):
 * a migrate job stores what CopyAssignments stores (checked against the rows put in, and against
 * CopyAssignments itself on a twin target), then stops its source when asked; an import job stores
 * what ImportAssignments stores from a cohort uploaded with a variant column (SKIP_EXISTING and
 * OVERWRITE); a job run again over what is copied or imported changes nothing; bad input is
 * refused naming it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  ImportPolicy,
  JobKind,
  JobService,
  JobState,
  type Client,
  type Job,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer } from "../../src/server.js";
import { expectFailure, status, units } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const AB = [
  { key: "control", weight: 5000 },
  { key: "green", weight: 3000 },
  { key: "blue", weight: 2000 },
];
const OLD = [
  { key: "a", weight: 4000 },
  { key: "b", weight: 4000 },
  { key: "c", weight: 2000 },
];

let t: TestServer;
let cohorts: Client<typeof CohortService>;
let jobs: Client<typeof JobService>;
let admin: Client<typeof ExperimentService>;

beforeAll(async () => {
  t = await startTestServer({ jobs: { chunkUnits: 1_000, pollingIntervalSeconds: 0.5 } });
  cohorts = createClient(CohortService, t.server.address, { timeoutMs: 60_000 });
  jobs = createClient(JobService, t.server.address, { timeoutMs: 60_000 });
  admin = t.experiments;
});
afterAll(async () => {
  cohorts?.close();
  jobs?.close();
  await t?.stop();
});

async function importRows(rows: { experimentKey: string; unitId: string; variantKey: string }[], overwrite = false) {
  async function* messages() {
    for (let i = 0; i < rows.length; i += 5_000) {
      yield {
        ...(i === 0 ? { setup: { policy: overwrite ? ImportPolicy.OVERWRITE : ImportPolicy.SKIP_EXISTING } } : {}),
        rows: rows.slice(i, i + 5_000),
      };
    }
  }
  return admin.importAssignments(messages());
}

async function storedRows(experimentKey: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const m of admin.exportAssignments({ experimentKey })) {
    m.unitIds.forEach((u, i) => out.set(u, m.legend[m.variantIndexes[i]!]!));
  }
  return out;
}

async function finished(id: string): Promise<Job> {
  let last: Job | undefined;
  for await (const m of jobs.watchJob({ id }, { timeoutMs: 300_000 })) last = m.job;
  return last!;
}

async function uploadTable(name: string, rows: [string, string][], unitType = "") {
  async function* messages() {
    yield {
      setup: { name, unitType, withVariants: true },
      unitIds: rows.slice(0, 10_000).map((r) => r[0]),
      variantKeys: rows.slice(0, 10_000).map((r) => r[1]),
    };
    for (let i = 10_000; i < rows.length; i += 10_000) {
      yield { unitIds: rows.slice(i, i + 10_000).map((r) => r[0]), variantKeys: rows.slice(i, i + 10_000).map((r) => r[1]) };
    }
  }
  return cohorts.uploadCohort(messages());
}

describe("migrate jobs", () => {
  // The source's stored units: a, b or c by position; the mapping names a and b only.
  const ids = units("m-", 12_345);
  const variantOf = (i: number) => (i % 7 === 0 ? "c" : i % 2 === 0 ? "a" : "b");
  const mapping = { a: "control", b: "green" };
  // Units the targets hold already (blue), which a copy leaves alone.
  const held = units("m-", 300, 1_000);

  beforeAll(async () => {
    await admin.createExperiment({ key: "mig-src", variants: OLD, status: ExperimentStatus.RUNNING });
    for (const key of ["mig-dst", "copy-dst"]) await admin.createExperiment({ key, variants: AB, status: ExperimentStatus.RUNNING });
    await importRows(ids.map((u, i) => ({ experimentKey: "mig-src", unitId: u, variantKey: variantOf(i) })));
    for (const key of ["mig-dst", "copy-dst"]) await importRows(held.map((u) => ({ experimentKey: key, unitId: u, variantKey: "blue" })));
  });

  it("copies as CopyAssignments does, in chunks, then stops the source", async () => {
    const { job } = await jobs.startJob({
      spec: {
        kind: JobKind.MIGRATE,
        sourceExperimentKey: "mig-src",
        targetExperimentKey: "mig-dst",
        variantMapping: mapping,
        stopSource: true,
      },
    });
    expect(job?.totalUnits).toBe(12_345n);
    expect(job?.chunks).toBe(13); // 12 ranges of 1,000 source units, and the rest
    expect(job?.spec?.variantMapping).toEqual(mapping);
    const last = await finished(job!.id);
    expect([last.state, last.error]).toEqual([JobState.DONE, ""]);

    // What the rows put in say: held units stay blue, a -> control, b -> green, c not copied.
    const expected = new Map<string, string>(held.map((u) => [u, "blue"]));
    ids.forEach((u, i) => {
      const to = mapping[variantOf(i) as "a" | "b"] as string | undefined;
      if (to && !expected.has(u)) expected.set(u, to);
    });
    const got = await storedRows("mig-dst");
    expect(got).toEqual(expected);
    expect([last.processedUnits, last.enrolled, last.chunksDone]).toEqual([12_345n, BigInt(expected.size - held.length), 13]);

    // The same as CopyAssignments into a twin target.
    for await (const _ of admin.copyAssignments({
      sourceExperimentKey: "mig-src",
      targetExperimentKey: "copy-dst",
      variantMapping: mapping,
    })) {
      // runs to the end
    }
    expect(await storedRows("copy-dst")).toEqual(got);

    const { experiment } = await admin.getExperiment({ key: "mig-src" });
    expect(experiment?.status).toBe(ExperimentStatus.STOPPED);
  });

  it("run again over what it copied, changes nothing and copies nothing", async () => {
    const before = await storedRows("mig-dst");
    const { job } = await jobs.startJob({
      spec: { kind: JobKind.MIGRATE, sourceExperimentKey: "mig-src", targetExperimentKey: "mig-dst", variantMapping: mapping },
    });
    const last = await finished(job!.id);
    expect([last.state, last.processedUnits, last.enrolled]).toEqual([JobState.DONE, 12_345n, 0n]);
    expect(await storedRows("mig-dst")).toEqual(before);
  });

  it("an empty source is one chunk that copies nothing", async () => {
    await admin.createExperiment({ key: "mig-empty", variants: OLD, status: ExperimentStatus.RUNNING });
    const { job } = await jobs.startJob({
      spec: { kind: JobKind.MIGRATE, sourceExperimentKey: "mig-empty", targetExperimentKey: "mig-dst", variantMapping: { a: "control" } },
    });
    const last = await finished(job!.id);
    expect([last.state, last.chunks, last.processedUnits, last.enrolled]).toEqual([JobState.DONE, 1, 0n, 0n]);
  });

  it("bad input is refused naming it, and records no job", async () => {
    await admin.createExperiment({ key: "mig-devices", variants: AB, unitType: "device_id", status: ExperimentStatus.RUNNING });
    const before = (await jobs.listJobs({})).jobs.length;
    const spec = { kind: JobKind.MIGRATE, sourceExperimentKey: "mig-src", targetExperimentKey: "mig-dst", variantMapping: mapping };
    const cases: [object, status, string][] = [
      [{ ...spec, sourceExperimentKey: "ghost" }, status.NOT_FOUND, 'spec.source_experiment_key: no experiment "ghost"'],
      [{ ...spec, targetExperimentKey: "ghost" }, status.NOT_FOUND, 'spec.target_experiment_key: no experiment "ghost"'],
      [
        { ...spec, variantMapping: { a: "purple" } },
        status.INVALID_ARGUMENT,
        'spec.variant_mapping["a"]: value must be a variant of "mig-dst" (got "purple")',
      ],
      [
        { ...spec, variantMapping: { z: "control" } },
        status.INVALID_ARGUMENT,
        'spec.variant_mapping["z"]: key must be a variant of "mig-src"',
      ],
      [{ ...spec, variantMapping: {} }, status.INVALID_ARGUMENT, "spec.variant_mapping: must map at least one"],
      [
        { ...spec, targetExperimentKey: "mig-devices" },
        status.FAILED_PRECONDITION,
        'spec.target_experiment_key: unit type device_id of "mig-devices" differs from the source\'s user_id',
      ],
      [{ ...spec, targetExperimentKey: "mig-src" }, status.INVALID_ARGUMENT, "spec.target_experiment_key: must differ"],
      [{ ...spec, cohort: "some-cohort" }, status.INVALID_ARGUMENT, "spec.cohort: must be empty for JOB_KIND_MIGRATE"],
    ];
    for (const [s, code, text] of cases) await expectFailure(jobs.startJob({ spec: s }), code, text);
    expect((await jobs.listJobs({})).jobs.length).toBe(before);
  });
});

describe("import jobs", () => {
  const ids = units("imp-", 5_500);
  const variantOf = (i: number) => AB[i % 3]!.key;
  // Rows: every unit once, then imp-0 again with another variant (the first row counts).
  const rows: [string, string][] = [...ids.map((u, i): [string, string] => [u, variantOf(i)]), ["imp-0", "blue"]];
  const held = units("imp-", 50, 100); // stored already in the targets, as "green"

  beforeAll(async () => {
    for (const key of ["imp-dst", "imp-twin"]) {
      await admin.createExperiment({ key, variants: AB, status: ExperimentStatus.RUNNING });
      await importRows(held.map((u) => ({ experimentKey: key, unitId: u, variantKey: "green" })));
    }
  });

  it("uploads a table with a variant column, all or nothing, first row of a unit counting", async () => {
    const r = await uploadTable("legacy-rows", rows);
    expect([r.cohort?.size, r.received, r.duplicates, r.cohort?.hasVariants]).toEqual([5_500n, 5_501n, 1n, true]);
    expect(r.cohort?.variantKeys).toEqual(["blue", "control", "green"]);
    const plain = await cohorts.uploadCohort(
      (async function* () {
        yield { setup: { name: "plain-ids" }, unitIds: ["p-1", "p-2"] };
      })(),
    );
    expect([plain.cohort?.hasVariants, plain.cohort?.variantKeys]).toEqual([false, []]);
    const refused: [object[], string][] = [
      [[{ setup: { name: "bad-table", withVariants: true }, unitIds: ["u-1", "u-2"], variantKeys: ["a"] }], "messages[0].variant_keys"],
      [[{ setup: { name: "bad-table", withVariants: true }, unitIds: ["u-1"], variantKeys: ["no way"] }], "variant_keys[0]"],
      [[{ setup: { name: "bad-table" }, unitIds: ["u-1"], variantKeys: ["a"] }], "must be empty unless setup.with_variants"],
    ];
    for (const [messages, text] of refused) {
      await expectFailure(
        cohorts.uploadCohort(
          (async function* () {
            yield* messages;
          })(),
        ),
        status.INVALID_ARGUMENT,
        text,
      );
    }
    expect((await cohorts.listCohorts({})).cohorts.map((c) => c.name)).not.toContain("bad-table");
  });

  it("imports as ImportAssignments does (SKIP_EXISTING), in chunks; again, it changes nothing", async () => {
    const { job } = await jobs.startJob({ spec: { kind: JobKind.IMPORT, cohort: "legacy-rows", targetExperimentKey: "imp-dst" } });
    expect([job?.totalUnits, job?.chunks]).toEqual([5_500n, 6]);
    const last = await finished(job!.id);
    expect([last.state, last.error]).toEqual([JobState.DONE, ""]);
    const expected = new Map<string, string>(held.map((u) => [u, "green"]));
    ids.forEach((u, i) => {
      if (!expected.has(u)) expected.set(u, variantOf(i));
    });
    const got = await storedRows("imp-dst");
    expect(got).toEqual(expected);
    expect([last.processedUnits, last.enrolled]).toEqual([5_500n, BigInt(5_500 - held.length)]);

    // ImportAssignments of the same rows into a twin experiment stores the same.
    await importRows(rows.map(([unitId, variantKey]) => ({ experimentKey: "imp-twin", unitId, variantKey })));
    expect(await storedRows("imp-twin")).toEqual(got);

    const again = await finished(
      (await jobs.startJob({ spec: { kind: JobKind.IMPORT, cohort: "legacy-rows", targetExperimentKey: "imp-dst" } })).job!.id,
    );
    expect([again.state, again.processedUnits, again.enrolled]).toEqual([JobState.DONE, 5_500n, 0n]);
    expect(await storedRows("imp-dst")).toEqual(got);
  });

  it("with overwrite, replaces what is stored, as ImportAssignments with OVERWRITE", async () => {
    const { job } = await jobs.startJob({
      spec: { kind: JobKind.IMPORT, cohort: "legacy-rows", targetExperimentKey: "imp-dst", overwrite: true },
    });
    const last = await finished(job!.id);
    expect([last.state, last.enrolled]).toEqual([JobState.DONE, 5_500n]);
    const expected = new Map(ids.map((u, i) => [u, variantOf(i)]));
    expect(await storedRows("imp-dst")).toEqual(expected);
    await importRows(
      rows.map(([unitId, variantKey]) => ({ experimentKey: "imp-twin", unitId, variantKey })),
      true,
    );
    expect(await storedRows("imp-twin")).toEqual(expected);
  });

  it("bad input is refused naming it, and records no job", async () => {
    await admin.createExperiment({ key: "imp-small", variants: [{ key: "control", weight: 10_000 }], status: ExperimentStatus.RUNNING });
    await admin.createExperiment({ key: "imp-devices", variants: AB, unitType: "device_id", status: ExperimentStatus.RUNNING });
    const before = (await jobs.listJobs({})).jobs.length;
    const spec = { kind: JobKind.IMPORT, cohort: "legacy-rows", targetExperimentKey: "imp-dst" };
    const cases: [object, status, string][] = [
      [{ ...spec, cohort: "nope" }, status.NOT_FOUND, 'spec.cohort: no cohort "nope"'],
      [{ ...spec, targetExperimentKey: "ghost" }, status.NOT_FOUND, 'spec.target_experiment_key: no experiment "ghost"'],
      [{ ...spec, targetExperimentKey: "" }, status.INVALID_ARGUMENT, "spec.target_experiment_key"],
      [{ ...spec, cohort: "plain-ids" }, status.FAILED_PRECONDITION, 'spec.cohort: cohort "plain-ids" has no variant column'],
      [
        { ...spec, targetExperimentKey: "imp-small" },
        status.FAILED_PRECONDITION,
        'spec.cohort: cohort "legacy-rows" names variants "blue", "green" that experiment "imp-small" does not have',
      ],
      [
        { ...spec, targetExperimentKey: "imp-devices" },
        status.FAILED_PRECONDITION,
        'experiment "imp-devices" has unit type device_id; cohort "legacy-rows" holds user_id ids',
      ],
      [{ ...spec, experimentKeys: ["imp-dst"] }, status.INVALID_ARGUMENT, "spec.experiment_keys: must be empty for JOB_KIND_IMPORT"],
      [
        { kind: JobKind.ASSIGN, cohort: "legacy-rows", experimentKeys: ["imp-dst"], overwrite: true },
        status.INVALID_ARGUMENT,
        "spec.overwrite: must be empty for JOB_KIND_ASSIGN",
      ],
    ];
    for (const [s, code, text] of cases) await expectFailure(jobs.startJob({ spec: s }), code, text);
    expect((await jobs.listJobs({})).jobs.length).toBe(before);
  });
});

describe("on the embedded PGlite", () => {
  it("imports a table, then migrates it into another experiment, in process", async () => {
    const server = await startServer({
      pgliteDataDir: "memory://",
      port: 0,
      memoryCacheEntries: 10_000,
      logger: createLogger("silent"),
      jobs: { chunkUnits: 300, pollingIntervalSeconds: 0.5 },
    });
    const liteCohorts = createClient(CohortService, server.address, { timeoutMs: 60_000 });
    const liteJobs = createClient(JobService, server.address, { timeoutMs: 60_000 });
    const liteAdmin = createClient(ExperimentService, server.address, { timeoutMs: 60_000 });
    const run = async (spec: object) => {
      const { job } = await liteJobs.startJob({ spec });
      let last: Job | undefined;
      for await (const m of liteJobs.watchJob({ id: job!.id }, { timeoutMs: 120_000 })) last = m.job;
      return last!;
    };
    try {
      await liteAdmin.createExperiment({ key: "lite-old", variants: OLD, status: ExperimentStatus.RUNNING });
      await liteAdmin.createExperiment({ key: "lite-new", variants: AB, status: ExperimentStatus.RUNNING });
      const ids = units("lite-", 1_000);
      const variantOf = (i: number) => OLD[i % 3]!.key;
      await liteCohorts.uploadCohort(
        (async function* () {
          yield { setup: { name: "lite-rows", withVariants: true }, unitIds: ids, variantKeys: ids.map((_, i) => variantOf(i)) };
        })(),
      );
      const imported = await run({ kind: JobKind.IMPORT, cohort: "lite-rows", targetExperimentKey: "lite-old" });
      expect([imported.state, imported.enrolled, imported.chunksDone]).toEqual([JobState.DONE, 1_000n, 4]);
      const migrated = await run({
        kind: JobKind.MIGRATE,
        sourceExperimentKey: "lite-old",
        targetExperimentKey: "lite-new",
        variantMapping: { a: "control", b: "green", c: "blue" },
        stopSource: true,
      });
      expect([migrated.state, migrated.processedUnits, migrated.enrolled]).toEqual([JobState.DONE, 1_000n, 1_000n]);
      const stored = new Map<string, string>();
      for await (const m of liteAdmin.exportAssignments({ experimentKey: "lite-new" })) {
        m.unitIds.forEach((u, i) => stored.set(u, m.legend[m.variantIndexes[i]!]!));
      }
      const to: Record<string, string> = { a: "control", b: "green", c: "blue" };
      expect(stored).toEqual(new Map(ids.map((u, i) => [u, to[variantOf(i)]!])));
      expect((await liteAdmin.getExperiment({ key: "lite-old" })).experiment?.status).toBe(ExperimentStatus.STOPPED);
    } finally {
      liteCohorts.close();
      liteJobs.close();
      liteAdmin.close();
      await server.close();
    }
  });
});
