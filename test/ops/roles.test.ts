/**
 * Named tokens and roles, through a real gRPC client against a real server: every RPC of both
 * services × every role (and no token, and an unknown one). Each cell is OK when the role may
 * call the method (the requests below are valid), PERMISSION_DENIED naming the role needed when it
 * may not, UNAUTHENTICATED without a known token.
 *
 * The expectations are written here from the roles' definitions (admin: everything; operator:
 * start/pause/stop, rollout, overrides, imports and copies, and what a reader may; reader: get,
 * list, stats, export; assign: AssignmentService only), not read from the server's table.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  JobKind,
  JobService,
  type Client,
} from "assignment-client";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { failure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const TOKENS = {
  admin: "role-test-admin-0123456789",
  operator: "role-test-operator-0123456789",
  reader: "role-test-reader-0123456789",
  assign: "role-test-assign-0123456789",
};
type Who = keyof typeof TOKENS | "no-token" | "unknown-token";
const CALLERS: Who[] = ["admin", "operator", "reader", "assign", "no-token", "unknown-token"];

const A: Who[] = ["admin"];
const AS: Who[] = ["admin", "assign"];
const OP: Who[] = ["admin", "operator"];
const RD: Who[] = ["admin", "operator", "reader"];

/** Who may call each RPC, from the roles' definitions. A method missing here fails the test. */
const EXPECTED: Record<string, Who[]> = {
  "AssignmentService/Assign": AS,
  "AssignmentService/AssignUnit": AS,
  "AssignmentService/BulkAssign": AS,
  "AssignmentService/MatrixAssign": AS,
  "AssignmentService/StreamAssign": AS,
  "AssignmentService/ResolveParams": AS,
  "AssignmentService/BulkResolveParams": AS,
  "ExperimentService/CreateExperiment": A,
  "ExperimentService/GetExperiment": RD,
  "ExperimentService/ListExperiments": RD,
  "ExperimentService/UpdateExperiment": OP,
  "ExperimentService/ArchiveExperiment": A,
  "ExperimentService/UnarchiveExperiment": A,
  "ExperimentService/CreateNamespace": A,
  "ExperimentService/GetNamespace": RD,
  "ExperimentService/ListNamespaces": RD,
  "ExperimentService/UpdateNamespace": A,
  "ExperimentService/ArchiveNamespace": A,
  "ExperimentService/UnarchiveNamespace": A,
  "ExperimentService/AllocateSegments": A,
  "ExperimentService/ReleaseSegments": A,
  "ExperimentService/SetOverrides": OP,
  "ExperimentService/ClearOverrides": OP,
  "ExperimentService/ListOverrides": RD,
  "ExperimentService/GetExperimentStats": RD,
  "ExperimentService/ImportAssignments": OP,
  "ExperimentService/ExportAssignments": RD,
  "ExperimentService/CopyAssignments": OP,
  "ExperimentService/ListChanges": RD,
  "ExperimentService/EraseUnits": A,
  "ExperimentService/WatchAssignments": RD,
  "ExperimentService/CreateHoldout": A,
  "ExperimentService/GetHoldout": RD,
  "ExperimentService/ListHoldouts": RD,
  "ExperimentService/UpdateHoldout": A,
  "ExperimentService/GetHoldoutStats": RD,
  "CohortService/UploadCohort": OP,
  "CohortService/GetCohort": RD,
  "CohortService/ListCohorts": RD,
  "CohortService/DeleteCohort": OP,
  "CohortService/ExportCohort": RD,
  "JobService/StartJob": OP,
  "JobService/GetJob": RD,
  "JobService/ListJobs": RD,
  "JobService/CancelJob": OP,
  "JobService/WatchJob": RD,
  "JobService/CreateSchedule": OP,
  "JobService/ListSchedules": RD,
  "JobService/DeleteSchedule": OP,
};

let t: TestServer;
/** A job cancelled at once, so that WatchJob ends. */
let fixtureJob = "";
let admin: Client<typeof ExperimentService>;
beforeAll(async () => {
  const file = Object.entries(TOKENS)
    .map(([role, token]) => `${role}-bot ${role} ${token}`)
    .join("\n");
  t = await startTestServer({ tokens: parseTokenFile(file) });
  admin = createClient(ExperimentService, t.server.address, { token: TOKENS.admin, timeoutMs: 20_000 });
  const ab = [
    { key: "a", weight: 5000 },
    { key: "b", weight: 5000 },
  ];
  await admin.createExperiment({ key: "fixture", variants: ab, status: ExperimentStatus.RUNNING });
  await admin.createExperiment({ key: "fixture-copy", variants: ab, status: ExperimentStatus.RUNNING });
  await admin.createExperiment({ key: "fixture-ns", variants: ab });
  await admin.createNamespace({ key: "ns", segments: 100 });
  await admin.createExperiment({ key: "fixture-archive", variants: ab });
  await admin.createNamespace({ key: "ns-archive", segments: 10 });
  // Covers nothing (no experiment carries its tag), so it changes no other call's answer.
  await admin.createHoldout({ key: "fixture-holdout", share: 100, tags: ["no-such-tag"] });
  const cohorts = createClient(CohortService, t.server.address, { token: TOKENS.admin, timeoutMs: 20_000 });
  await cohorts.uploadCohort(
    (async function* () {
      yield { setup: { name: "fixture-cohort" }, unitIds: ["u-1"] };
    })(),
  );
  cohorts.close();
  const jobs = createClient(JobService, t.server.address, { token: TOKENS.admin, timeoutMs: 20_000 });
  fixtureJob = (await jobs.startJob({ spec: { kind: JobKind.WARM, cohort: "fixture-cohort", experimentKeys: ["fixture"] } })).job!.id;
  await jobs.cancelJob({ id: fixtureJob });
  jobs.close();
});
afterAll(async () => {
  admin?.close();
  await t?.stop();
});

/** A valid request of each RPC, by method; `who` makes keys unique. A method added later gets an
 * empty request (any answer but an auth error then counts as allowed). */
const REQUESTS: Record<string, (who: Who) => unknown> = {
  assign: () => ({ experimentKey: "fixture", unitId: "u-1" }),
  assignUnit: () => ({ units: { user_id: "u-1" } }),
  bulkAssign: () => ({ experimentKey: "fixture", unitIds: ["u-1", "u-2"] }),
  matrixAssign: () => ({ experimentKeys: ["fixture"], unitIds: ["u-1"] }),
  streamAssign: () => [{ setup: { experimentKeys: ["fixture"] }, unitIds: ["u-3"] }],
  createExperiment: (who) => ({ key: `made-by-${who}`, variants: [{ key: "a", weight: 10_000 }] }),
  getExperiment: () => ({ key: "fixture" }),
  listExperiments: () => ({}),
  updateExperiment: () => ({ key: "fixture", rollout: 10_000 }), // the current version is added at the call
  createNamespace: (who) => ({ key: `ns-by-${who}`, segments: 10 }),
  getNamespace: () => ({ key: "ns" }),
  listNamespaces: () => ({}),
  updateNamespace: () => ({ key: "ns", defaultParams: { color: "blue" } }),
  resolveParams: () => ({ units: { user_id: "u-1" }, namespaceKeys: ["ns"] }),
  bulkResolveParams: () => ({ unitIds: ["u-1", "u-2"], namespaceKeys: ["ns"] }),
  createHoldout: (who) => ({ key: `holdout-by-${who}`, share: 0, tags: ["no-such-tag"] }),
  getHoldout: () => ({ key: "fixture-holdout" }),
  listHoldouts: () => ({}),
  updateHoldout: () => ({ key: "fixture-holdout", share: 200 }),
  getHoldoutStats: () => ({ key: "fixture-holdout" }),
  archiveExperiment: () => ({ key: "fixture-archive" }),
  unarchiveExperiment: () => ({ key: "fixture-archive" }),
  archiveNamespace: () => ({ key: "ns-archive" }),
  unarchiveNamespace: () => ({ key: "ns-archive" }),
  allocateSegments: () => ({ namespaceKey: "ns", experimentKey: "fixture-ns", segments: 1 }),
  releaseSegments: () => ({ namespaceKey: "ns", experimentKey: "fixture-ns" }),
  setOverrides: () => ({ experimentKey: "fixture", overrides: [{ unitId: "o-1", variantKey: "a" }] }),
  clearOverrides: () => ({ experimentKey: "fixture", unitIds: ["o-1"] }),
  listOverrides: () => ({ experimentKey: "fixture", pageSize: 10 }),
  getExperimentStats: () => ({ key: "fixture" }),
  importAssignments: (who) => [{ rows: [{ experimentKey: "fixture", unitId: `imported-by-${who}`, variantKey: "b" }] }],
  exportAssignments: () => ({ experimentKey: "fixture" }),
  copyAssignments: () => ({ sourceExperimentKey: "fixture", targetExperimentKey: "fixture-copy", variantMapping: { a: "a", b: "b" } }),
  listChanges: () => ({ objectKind: "experiment", objectKey: "fixture" }),
  eraseUnits: (who) => ({ unitIds: [`erased-by-${who}`, "u-1"] }),
  watchAssignments: () => ({ experimentKeys: ["fixture"], stopWhenCaughtUp: true }),
  // The upload of each role that may is the cohort it deletes (DeleteCohort comes after UploadCohort).
  uploadCohort: (who) => [{ setup: { name: `cohort-by-${who}` }, unitIds: ["u-1", "u-2"] }],
  getCohort: () => ({ name: "fixture-cohort" }),
  listCohorts: () => ({}),
  deleteCohort: (who) => ({ name: `cohort-by-${who}` }),
  exportCohort: () => ({ name: "fixture-cohort" }),
  startJob: () => ({ spec: { kind: JobKind.WARM, cohort: "fixture-cohort", experimentKeys: ["fixture"] } }),
  getJob: () => ({ id: fixtureJob }),
  listJobs: () => ({}),
  cancelJob: () => ({ id: fixtureJob }),
  watchJob: () => ({ id: fixtureJob }),
  // The schedule each role that may makes is the one it deletes (DeleteSchedule comes after CreateSchedule).
  createSchedule: (who) => ({
    schedule: {
      name: `nightly-${who}`,
      cron: "0 3 * * *",
      spec: { kind: JobKind.WARM, cohort: "fixture-cohort", experimentKeys: ["fixture"] },
    },
  }),
  listSchedules: () => ({}),
  deleteSchedule: (who) => ({ name: `nightly-${who}` }),
};

/** Calls `method` as `who` and returns the status code and details (OK: code 0). */
async function call(method: DescMethod, who: Who): Promise<{ code: number; details: string }> {
  const token = who === "no-token" ? undefined : who === "unknown-token" ? "role-test-nobody-0123456789" : TOKENS[who];
  const client = createClient(method.parent, t.server.address, { token, timeoutMs: 20_000, retry: false }) as unknown as Record<
    string,
    (req: unknown) => unknown
  >;
  let request =
    REQUESTS[method.localName]?.(who) ?? (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming" ? [{}] : {});
  if (method.localName === "updateExperiment") {
    request = { ...(request as object), version: (await admin.getExperiment({ key: "fixture" })).experiment!.version };
  }
  const fn = client[method.localName]!;
  const stream = async function* () {
    yield* request as unknown[];
  };
  try {
    switch (method.methodKind) {
      case "unary":
        await fn(request);
        break;
      case "server_streaming":
        for await (const _ of fn(request) as AsyncIterable<unknown>) void _;
        break;
      case "client_streaming":
        await fn(stream());
        break;
      case "bidi_streaming":
        for await (const _ of fn(stream()) as AsyncIterable<unknown>) void _;
        break;
    }
    return { code: status.OK, details: "" };
  } catch (err) {
    const f = await failure(Promise.reject(err));
    return f;
  } finally {
    (client as unknown as { close(): void }).close();
  }
}

const services: DescService[] = [AssignmentService, ExperimentService, CohortService, JobService];
const methodName = (m: DescMethod) => `${m.parent.name}/${m.name}`;

describe("roles: every RPC × every role", () => {
  it("names every RPC of both services in the expectations", () => {
    const rpcs = services.flatMap((s) => s.methods.map(methodName));
    expect(rpcs.filter((r) => !(r in EXPECTED))).toEqual([]);
    expect(Object.keys(EXPECTED).filter((r) => !rpcs.includes(r))).toEqual([]);
  });

  it(
    "OK when the role may call it; PERMISSION_DENIED naming the role needed when not; UNAUTHENTICATED without a known token",
    {
      timeout: 120_000,
    },
    async () => {
      const wrong: string[] = [];
      const grid: string[] = [];
      for (const service of services) {
        for (const method of service.methods) {
          const allowed = EXPECTED[methodName(method)] ?? A;
          const row: string[] = [];
          for (const who of CALLERS) {
            const { code, details } = await call(method, who);
            row.push(status[code]!);
            const cell = `${methodName(method)} as ${who}: ${status[code]} ${details}`;
            if (who === "no-token" || who === "unknown-token") {
              if (code !== status.UNAUTHENTICATED) wrong.push(`${cell} (want UNAUTHENTICATED)`);
            } else if (allowed.includes(who)) {
              // A valid request: OK; a method without one here: any answer but an auth error.
              const ok =
                method.localName in REQUESTS ? code === status.OK : code !== status.UNAUTHENTICATED && code !== status.PERMISSION_DENIED;
              if (!ok) wrong.push(`${cell} (want OK)`);
            } else {
              const named = allowed.filter((r) => r !== "admin");
              if (code !== status.PERMISSION_DENIED) wrong.push(`${cell} (want PERMISSION_DENIED)`);
              else if (!details.includes("needs role") || !named.every((r) => details.includes(r)) || !details.includes("admin")) {
                wrong.push(`${cell} (want the roles needed named: ${allowed.join(", ")})`);
              } else if (!details.includes(`token "${who}-bot" has role ${who}`)) wrong.push(`${cell} (want the token and its role named)`);
            }
          }
          grid.push(`${methodName(method).padEnd(36)} ${row.join(" ")}`);
        }
      }
      expect(wrong, grid.join("\n")).toEqual([]);
      // The refused calls changed nothing: only the admin's experiment and namespace were made.
      const { experiments } = await admin.listExperiments({});
      expect(experiments.map((e) => e.key).filter((k) => k.startsWith("made-by-"))).toEqual(["made-by-admin"]);
      const { namespaces } = await admin.listNamespaces({});
      expect(namespaces.map((n) => n.key).filter((k) => k.startsWith("ns-by-"))).toEqual(["ns-by-admin"]);
    },
  );
});

describe("UpdateExperiment as operator", () => {
  it("may change status, winner and rollout; any other field needs admin, and a refused update changes nothing", async () => {
    const operator = createClient(ExperimentService, t.server.address, { token: TOKENS.operator, timeoutMs: 20_000, retry: false });
    try {
      const version = async () => (await admin.getExperiment({ key: "fixture" })).experiment!.version;
      const ramp = await operator.updateExperiment({ key: "fixture", version: await version(), rollout: 2_500 });
      expect(ramp.experiment!.rollout).toBe(2_500);
      const paused = await operator.updateExperiment({ key: "fixture", version: await version(), status: ExperimentStatus.PAUSED });
      expect(paused.experiment!.status).toBe(ExperimentStatus.PAUSED);
      const stopped = await operator.updateExperiment({
        key: "fixture",
        version: await version(),
        status: ExperimentStatus.STOPPED,
        winner: "b",
      });
      expect([stopped.experiment!.status, stopped.experiment!.winner]).toEqual([ExperimentStatus.STOPPED, "b"]);
      const before = await version();
      const refusals: [object, string][] = [
        [
          {
            variants: {
              variants: [
                { key: "a", weight: 9000 },
                { key: "b", weight: 1000 },
              ],
            },
          },
          "variants",
        ],
        [{ tags: { tags: ["web"] } }, "tags"],
        [{ description: "mine now" }, "description"],
        [{ defaultVariant: "b" }, "default_variant"],
        [{ rollout: 5_000, description: "and this" }, "description"],
      ];
      for (const [change, field] of refusals) {
        const f = await failure(operator.updateExperiment({ key: "fixture", version: before, ...change }));
        expect([status[f.code], f.details]).toEqual([
          "PERMISSION_DENIED",
          expect.stringContaining(`may change only status, winner and rollout; changing ${field} needs role admin`),
        ]);
      }
      expect(await version()).toBe(before);
      // The admin may change them.
      const weights = await admin.updateExperiment({ key: "fixture", version: before, ...refusals[0]![0] });
      expect(weights.experiment!.variants.map((v) => v.weight)).toEqual([9000, 1000]);
    } finally {
      operator.close();
    }
  });
});
