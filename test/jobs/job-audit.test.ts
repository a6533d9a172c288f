/**
 * The audit log of cohorts, jobs and schedules, through ListChanges on a real server with named
 * tokens: an upload, a replacement and a deletion of a cohort, a job started and cancelled, a
 * migrate job stopping its source (as the token that started it), a schedule created and
 * deleted; each with the token, its role and the RPC; a refused call records nothing.
 */
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Change,
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  ImportPolicy,
  JobKind,
  JobService,
  JobState,
  type Client,
} from "assignment-client";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { expectFailure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const TOKENS = { alice: "job-audit-alice-0123456789", olga: "job-audit-olga-0123456789" };
const TOKEN_FILE = `alice admin ${TOKENS.alice}\nolga operator ${TOKENS.olga}\n`;

let t: TestServer;
let alice: Client<typeof ExperimentService>;
let cohorts: Client<typeof CohortService>;
let jobs: Client<typeof JobService>;

beforeAll(async () => {
  t = await startTestServer({ tokens: parseTokenFile(TOKEN_FILE), jobs: { chunkUnits: 1_000, pollingIntervalSeconds: 0.5 } });
  const opts = { timeoutMs: 60_000, retry: false as const };
  alice = createClient(ExperimentService, t.server.address, { ...opts, token: TOKENS.alice });
  cohorts = createClient(CohortService, t.server.address, { ...opts, token: TOKENS.olga });
  jobs = createClient(JobService, t.server.address, { ...opts, token: TOKENS.olga });
});
afterAll(async () => {
  for (const c of [alice, cohorts, jobs]) c?.close();
  await t?.stop();
});

/** A change as JSON: who, what, and its fields `{field: [before, after]}`. */
function plain(c: Change) {
  const fields: Record<string, [JsonValue, JsonValue]> = {};
  for (const f of c.fields)
    fields[f.field] = [f.before ? toJson(ValueSchema, f.before) : null, f.after ? toJson(ValueSchema, f.after) : null];
  return {
    token: c.tokenName,
    role: c.tokenRole,
    rpc: c.rpc,
    kind: c.objectKind,
    key: c.objectKey,
    versioned: c.versionAfter !== undefined,
    fields,
  };
}

/** Oldest first. */
async function changesOf(objectKind: string, objectKey = "") {
  const { changes } = await alice.listChanges({ objectKind, objectKey });
  return changes.map(plain).reverse();
}

const upload = (name: string, ids: string[], replace = false) =>
  cohorts.uploadCohort(
    (async function* () {
      yield { setup: { name, replace }, unitIds: ids.slice(0, 10_000) };
      for (let i = 10_000; i < ids.length; i += 10_000) yield { unitIds: ids.slice(i, i + 10_000) };
    })(),
  );

describe("audit log of cohorts, jobs and schedules", () => {
  it("records a cohort's upload, replacement and deletion", async () => {
    await upload("audited", ["u-1", "u-2", "u-2"]);
    await upload("audited", ["u-3"], true);
    await expectFailure(upload("audited", ["u-4"]), status.ALREADY_EXISTS, "audited"); // refused: not recorded
    await cohorts.deleteCohort({ name: "audited" });
    const who = { token: "olga", role: "operator", kind: "cohort", key: "audited", versioned: false };
    expect(await changesOf("cohort", "audited")).toEqual([
      {
        ...who,
        rpc: "UploadCohort",
        fields: { unit_type: [null, "user_id"], size: [null, 2], ids_received: [null, 3] },
      },
      {
        ...who,
        rpc: "UploadCohort",
        fields: { unit_type: [null, "user_id"], size: [null, 1], ids_received: [null, 1], replaced: [null, true] },
      },
      { ...who, rpc: "DeleteCohort", fields: { deleted: [false, true], size: [1, null], unit_type: ["user_id", null] } },
    ]);
  });

  it("records a job's start and cancellation, and a migrate job's stop of its source as the token that started it", async () => {
    await alice.createExperiment({ key: "aud-a", variants: [{ key: "x", weight: 10_000 }], status: ExperimentStatus.RUNNING });
    await alice.createExperiment({ key: "aud-b", variants: [{ key: "y", weight: 10_000 }], status: ExperimentStatus.RUNNING });
    await upload(
      "audit-units",
      Array.from({ length: 5_000 }, (_, i) => `a-${i}`),
    );
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "audit-units", experimentKeys: ["aud-a"] } });
    const { job: cancelled } = await jobs.cancelJob({ id: job!.id });
    expect(cancelled?.state).toBe(JobState.CANCELLED);
    await jobs.cancelJob({ id: job!.id }); // already cancelled: nothing changes, nothing recorded
    const who = { token: "olga", role: "operator", kind: "job", key: job!.id, versioned: false };
    expect(await changesOf("job", job!.id)).toEqual([
      {
        ...who,
        rpc: "StartJob",
        fields: {
          kind: [null, "assign"],
          cohort: [null, "audit-units"],
          experiment_keys: [null, ["aud-a"]],
          state: [null, "queued"],
          total_units: [null, 5_000],
        },
      },
      { ...who, rpc: "CancelJob", fields: { state: [expect.stringMatching(/^(queued|running)$/), "cancelled"] } },
    ]);

    // A source of its own: the cancelled job may have stored units in aud-a.
    await alice.createExperiment({ key: "aud-c", variants: [{ key: "x", weight: 10_000 }], status: ExperimentStatus.RUNNING });
    await alice.importAssignments(
      (async function* () {
        yield { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows: [{ experimentKey: "aud-c", unitId: "m-1", variantKey: "x" }] };
      })(),
    );
    const { job: migrate } = await jobs.startJob({
      spec: {
        kind: JobKind.MIGRATE,
        sourceExperimentKey: "aud-c",
        targetExperimentKey: "aud-b",
        variantMapping: { x: "y" },
        stopSource: true,
      },
    });
    for await (const m of jobs.watchJob({ id: migrate!.id }, { timeoutMs: 120_000 })) if (m.job?.state === JobState.DONE) break;
    const started = (await changesOf("job", migrate!.id))[0]!;
    expect(started.fields).toEqual({
      kind: [null, "migrate"],
      source_experiment_key: [null, "aud-c"],
      target_experiment_key: [null, "aud-b"],
      variant_mapping: [null, { x: "y" }],
      stop_source: [null, true],
      state: [null, "queued"],
      total_units: [null, 1],
    });
    const stop = (await changesOf("experiment", "aud-c")).at(-1)!;
    expect([stop.token, stop.role, stop.rpc, stop.fields.status]).toEqual(["olga", "operator", "StartJob", ["RUNNING", "STOPPED"]]);
    const copied = (await changesOf("experiment", "aud-b")).at(-1)!;
    expect([copied.token, copied.rpc, copied.fields.rows_copied]).toEqual(["olga", "StartJob", [null, 1]]);
  });

  it("records a schedule's creation and deletion", async () => {
    await upload("nightly-units", ["n-1"]);
    await jobs.createSchedule({
      schedule: {
        name: "audited-nightly",
        cron: "0 3 * * *",
        spec: { kind: JobKind.ASSIGN, cohort: "nightly-units", experimentKeys: ["aud-b"] },
      },
    });
    await expectFailure(
      jobs.createSchedule({
        schedule: {
          name: "bad-cron",
          cron: "not a cron",
          spec: { kind: JobKind.ASSIGN, cohort: "nightly-units", experimentKeys: ["aud-b"] },
        },
      }),
      status.INVALID_ARGUMENT,
      "schedule.cron",
    );
    await jobs.deleteSchedule({ name: "audited-nightly" });
    const who = { token: "olga", role: "operator", kind: "schedule", key: "audited-nightly", versioned: false };
    expect(await changesOf("schedule")).toEqual([
      {
        ...who,
        rpc: "CreateSchedule",
        fields: {
          cron: [null, "0 3 * * *"],
          time_zone: [null, "UTC"],
          kind: [null, "assign"],
          cohort: [null, "nightly-units"],
          experiment_keys: [null, ["aud-b"]],
        },
      },
      { ...who, rpc: "DeleteSchedule", fields: { deleted: [false, true], cron: ["0 3 * * *", null] } },
    ]);
    await expectFailure(alice.listChanges({ objectKind: "table" }), status.INVALID_ARGUMENT, "object_kind");
  });
});
