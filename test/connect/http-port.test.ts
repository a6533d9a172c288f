/**
 * The HTTP port (Connect, gRPC-Web, HTTP/JSON) against the gRPC port of the same real server: a
 * plain JSON POST to every unary RPC of both services answers the canonical proto3 JSON of what
 * the gRPC call answers (toJson of the gRPC response); the same tokens and roles decide (HTTP 401
 * and 403 with a Connect error body); server streams work over Connect and gRPC-Web; request
 * streams answer UNIMPLEMENTED; `buf curl` works with both protocols; calls are counted and logged.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type DescMethod, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, type Client, createClient, ExperimentService, ExperimentStatus } from "assignment-client";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { scrapeMetrics } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const run = promisify(execFile);

const TOKENS = {
  admin: "http-test-admin-0123456789",
  reader: "http-test-reader-0123456789",
  assign: "http-test-assign-0123456789",
};

let t: TestServer;
let base: string;
let admin: Client<typeof ExperimentService>;
let assigner: Client<typeof AssignmentService>;

beforeAll(async () => {
  const file = Object.entries(TOKENS)
    .map(([role, token]) => `${role}-bot ${role} ${token}`)
    .join("\n");
  t = await startTestServer({ tokens: parseTokenFile(file), httpPort: 0, metricsPort: 0 });
  base = `http://127.0.0.1:${t.server.httpPort}`;
  admin = createClient(ExperimentService, t.server.address, { token: TOKENS.admin, timeoutMs: 20_000 });
  assigner = createClient(AssignmentService, t.server.address, { token: TOKENS.assign, timeoutMs: 20_000 });
  const ab = [
    { key: "a", weight: 5000 },
    { key: "b", weight: 5000 },
  ];
  await admin.createExperiment({ key: "shared", variants: ab, status: ExperimentStatus.RUNNING, tags: ["page"] });
  await admin.createNamespace({ key: "shared-ns", segments: 100, defaultParams: { color: "blue", size: 1 } });
  await admin.createExperiment({ key: "shared-ns-e", variants: ab, status: ExperimentStatus.RUNNING });
  await admin.allocateSegments({ namespaceKey: "shared-ns", experimentKey: "shared-ns-e", segments: 50 });
  await admin.createHoldout({ key: "shared-holdout", share: 500, tags: ["held"] });
  // Per transport (tag "grpc" or "http"): the fixtures a mutation acts on, alike but for the keys.
  for (const tag of ["grpc", "http"]) {
    await admin.createExperiment({ key: `e-${tag}`, variants: ab, status: ExperimentStatus.RUNNING });
    await admin.createExperiment({ key: `nse-${tag}`, variants: ab });
    await admin.createExperiment({ key: `upd-${tag}`, variants: ab, status: ExperimentStatus.RUNNING });
    await admin.createNamespace({ key: `ns-${tag}`, segments: 100 });
    await admin.createNamespace({ key: `nsr-${tag}`, segments: 100 });
    await admin.createNamespace({ key: `nsu-${tag}`, segments: 10 });
    await admin.createHoldout({ key: `hu-${tag}`, share: 100, tags: ["held"] });
    await admin.createExperiment({ key: `nsre-${tag}`, variants: ab });
    await admin.allocateSegments({ namespaceKey: `nsr-${tag}`, experimentKey: `nsre-${tag}`, segments: 7 });
    await admin.setOverrides({ experimentKey: `e-${tag}`, overrides: [{ unitId: "to-clear", variantKey: "b" }] });
    // Archived and unarchived over each transport: a stopped experiment, an archived one, an empty
    // namespace and an archived one.
    await admin.createExperiment({ key: `arch-${tag}`, variants: ab });
    await admin.createExperiment({ key: `unarch-${tag}`, variants: ab });
    await admin.archiveExperiment({ key: `unarch-${tag}` });
    await admin.createNamespace({ key: `archns-${tag}`, segments: 10 });
    await admin.createNamespace({ key: `unarchns-${tag}`, segments: 10 });
    await admin.archiveNamespace({ key: `unarchns-${tag}` });
    // What EraseUnits erases: two stored units and an override.
    await assigner.bulkAssign({ experimentKey: "shared", unitIds: [`gone-${tag}`, `gone-too-${tag}`] });
    await admin.setOverrides({ experimentKey: "shared", overrides: [{ unitId: `gone-${tag}`, variantKey: "a" }] });
  }
  await assigner.bulkAssign({ experimentKey: "shared", unitIds: ["u-1", "u-2", "u-3"] });
});
afterAll(async () => {
  admin?.close();
  assigner?.close();
  await t?.stop();
});

/**
 * A request of every unary RPC, as JSON (the HTTP body; the gRPC call sends the same fields).
 * `tag` names the transport, for mutations: each acts on fixtures of its own, and their answers
 * are compared with the tag taken out. Reads (`same`) send the same request on both, after one
 * call that warms up what a first call changes (a new assignment is NEW, then STICKY). A unary RPC
 * added later fails the test until it has a case here.
 */
const CASES: Record<string, { request: (tag: string) => Record<string, unknown>; same?: true }> = {
  "AssignmentService/Assign": {
    same: true,
    request: () => ({ experimentKey: "shared", unitId: "u-9", options: { explain: true, includeParams: true } }),
  },
  "AssignmentService/AssignUnit": { same: true, request: () => ({ units: { user_id: "u-1" }, tag: "page" }) },
  "AssignmentService/BulkAssign": { same: true, request: () => ({ experimentKey: "shared", unitIds: ["u-1", "u-2", "u-4", ""] }) },
  "AssignmentService/MatrixAssign": { same: true, request: () => ({ experimentKeys: ["shared", "missing"], unitIds: ["u-1", "u-5"] }) },
  "ExperimentService/CreateExperiment": {
    request: (tag) => ({
      key: `new-${tag}`,
      variants: [
        { key: "off", weight: 2500 },
        { key: "on", weight: 7500, params: { color: "#0a0", size: 3 } },
      ],
      rollout: 4000,
      tags: ["web"],
      description: "made over one transport",
    }),
  },
  "ExperimentService/GetExperiment": { same: true, request: () => ({ key: "shared", version: "1" }) },
  "ExperimentService/ListExperiments": { same: true, request: () => ({ status: "EXPERIMENT_STATUS_RUNNING" }) },
  "ExperimentService/UpdateExperiment": {
    request: (tag) => ({ key: `upd-${tag}`, version: "1", rollout: 5000, tags: { tags: ["changed"] } }),
  },
  "ExperimentService/CreateNamespace": { request: (tag) => ({ key: `new-ns-${tag}`, segments: 50 }) },
  "ExperimentService/GetNamespace": { same: true, request: () => ({ key: "shared-ns" }) },
  "ExperimentService/ListNamespaces": { same: true, request: () => ({}) },
  "ExperimentService/AllocateSegments": { request: (tag) => ({ namespaceKey: `ns-${tag}`, experimentKey: `nse-${tag}`, segments: 5 }) },
  "ExperimentService/ReleaseSegments": { request: (tag) => ({ namespaceKey: `nsr-${tag}`, experimentKey: `nsre-${tag}` }) },
  "ExperimentService/SetOverrides": { request: (tag) => ({ experimentKey: `e-${tag}`, overrides: [{ unitId: "t-1", variantKey: "a" }] }) },
  "ExperimentService/ClearOverrides": { request: (tag) => ({ experimentKey: `e-${tag}`, unitIds: ["to-clear"] }) },
  "ExperimentService/GetExperimentStats": { same: true, request: () => ({ key: "shared" }) },
  "ExperimentService/ArchiveExperiment": { request: (tag) => ({ key: `arch-${tag}` }) },
  "ExperimentService/UnarchiveExperiment": { request: (tag) => ({ key: `unarch-${tag}` }) },
  "ExperimentService/ArchiveNamespace": { request: (tag) => ({ key: `archns-${tag}` }) },
  "ExperimentService/UnarchiveNamespace": { request: (tag) => ({ key: `unarchns-${tag}` }) },
  "ExperimentService/ListOverrides": { same: true, request: () => ({ experimentKey: "e-grpc", pageSize: 10 }) },
  "ExperimentService/EraseUnits": { request: (tag) => ({ unitType: "user_id", unitIds: [`gone-${tag}`, `gone-too-${tag}`] }) },
  "AssignmentService/ResolveParams": { same: true, request: () => ({ units: { user_id: "u-1" }, namespaceKeys: ["shared-ns"] }) },
  "AssignmentService/BulkResolveParams": {
    same: true,
    request: () => ({ unitIds: ["u-1", "u-2", "u-3", ""], namespaceKeys: ["shared-ns"] }),
  },
  "ExperimentService/UpdateNamespace": { request: (tag) => ({ key: `nsu-${tag}`, defaultParams: { color: "red", n: [1, 2] } }) },
  "ExperimentService/CreateHoldout": { request: (tag) => ({ key: `new-h-${tag}`, share: 250, tags: ["no-experiment-has-it"] }) },
  "ExperimentService/GetHoldout": { same: true, request: () => ({ key: "shared-holdout" }) },
  "ExperimentService/ListHoldouts": { same: true, request: () => ({}) },
  "ExperimentService/UpdateHoldout": { request: (tag) => ({ key: `hu-${tag}`, share: 300, tags: { tags: ["held", "more"] } }) },
  "ExperimentService/GetHoldoutStats": { same: true, request: () => ({ key: "shared-holdout" }) },
  "ExperimentService/ListChanges": { same: true, request: () => ({ objectKind: "experiment", objectKey: "shared", pageSize: 2 }) },
};

const unaryMethods: DescMethod[] = [...AssignmentService.methods, ...ExperimentService.methods].filter((m) => m.methodKind === "unary");
const nameOf = (m: DescMethod) => `${m.parent.name}/${m.name}`;

async function post(path: string, body: unknown, token?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** The answer with the transport's tag and the clock taken out. */
function normalized(json: unknown, tag: string): unknown {
  const text = JSON.stringify(json).replaceAll(`-${tag}`, "-TAG");
  return JSON.parse(text, (key, value) => (key.endsWith("Time") && typeof value === "string" ? "<time>" : value));
}

describe("HTTP/JSON answers what gRPC answers", () => {
  it("has a case for every unary RPC of both services", () => {
    expect(unaryMethods.map(nameOf).filter((n) => !CASES[n])).toEqual([]);
    expect(unaryMethods.length).toBe(Object.keys(CASES).length);
  });

  for (const method of unaryMethods) {
    it(`${nameOf(method)}: a JSON POST answers the canonical JSON of the gRPC answer`, async () => {
      const c = CASES[nameOf(method)];
      expect(c, `no case for ${nameOf(method)}`).toBeDefined();
      const client = (method.parent === AssignmentService ? assigner : admin) as unknown as Record<
        string,
        (req: unknown) => Promise<never>
      >;
      const token = method.parent === AssignmentService ? TOKENS.assign : TOKENS.admin;
      // The gRPC client takes the same request as init shape: JSON names are the fields' names,
      // enums given by name are converted here.
      const grpcRequest = (tag: string) => fromJsonRequest(method, c!.request(tag));
      if (c!.same) await client[method.localName]!(grpcRequest("grpc"));
      const viaGrpc = toJson(method.output, await client[method.localName]!(grpcRequest("grpc")));
      const viaHttp = await post(`${method.parent.typeName}/${method.name}`, c!.request(c!.same ? "grpc" : "http"), token);
      expect(viaHttp.status, JSON.stringify(viaHttp.body)).toBe(200);
      expect(viaHttp.headers.get("content-type")).toBe("application/json");
      // Reads: the very same JSON. Mutations: the same but for the keys' tags and the clock.
      if (c!.same) expect(viaHttp.body).toEqual(viaGrpc);
      else expect(normalized(viaHttp.body, "http")).toEqual(normalized(viaGrpc, "grpc"));
      // Not empty: every case answers something.
      expect(Object.keys(viaHttp.body).length).toBeGreaterThan(0);
    });
  }
});

function fromJsonRequest(method: DescMethod, json: Record<string, unknown>) {
  return fromJson(method.input, json as JsonValue);
}

describe("auth over HTTP is gRPC's", () => {
  it("no token: HTTP 401 with a Connect error body naming unauthenticated", async () => {
    const r = await post("assignment.v1.ExperimentService/GetExperiment", { key: "shared" });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe("unauthenticated");
    expect(r.body.message).toContain('carried no "authorization"');
    const bad = await post(
      "assignment.v1.AssignmentService/Assign",
      { experimentKey: "shared", unitId: "u" },
      "not-a-token-of-this-server",
    );
    expect(bad.status).toBe(401);
    expect(bad.body.code).toBe("unauthenticated");
  });

  it("a role that may not make the call: HTTP 403 permission_denied naming the roles that may", async () => {
    const r = await post("assignment.v1.ExperimentService/CreateExperiment", { key: "by-reader" }, TOKENS.reader);
    expect(r.status).toBe(403);
    expect(r.body).toEqual({
      code: "permission_denied",
      message: 'assignment.v1.ExperimentService/CreateExperiment needs role admin; token "reader-bot" has role reader',
    });
    const assign = await post("assignment.v1.AssignmentService/Assign", { experimentKey: "shared", unitId: "u" }, TOKENS.reader);
    expect(assign.status).toBe(403);
    expect((await admin.getExperiment({ key: "by-reader" }).catch((e) => e.code)) as number).toBe(5);
  });

  it("bad input: HTTP 400 invalid_argument naming the field, like gRPC; a misspelt JSON field is refused", async () => {
    const r = await post("assignment.v1.AssignmentService/BulkAssign", { experimentKey: "shared", unitIds: [] }, TOKENS.assign);
    expect(r.status).toBe(400);
    expect(r.body.code).toBe("invalid_argument");
    expect(r.body.message).toMatch(/^unit_ids: /);
    const typo = await post("assignment.v1.AssignmentService/Assign", { experimentKey: "shared", unitIdd: "u" }, TOKENS.assign);
    expect(typo.status).toBe(400);
    expect(typo.body.message).toContain("unitIdd");
    const missing = await post("assignment.v1.ExperimentService/GetExperiment", { key: "nope" }, TOKENS.reader);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ code: "not_found", message: 'key: no experiment "nope"' });
  });
});

describe("streams over HTTP", () => {
  it("ExportAssignments streams over Connect and over gRPC-Web, the rows gRPC exports", async () => {
    const viaGrpc: string[] = [];
    for await (const batch of admin.exportAssignments({ experimentKey: "shared", batchSize: 2 })) viaGrpc.push(...batch.unitIds);
    expect(viaGrpc.length).toBeGreaterThanOrEqual(3);
    for (const make of [createConnectTransport, createGrpcWebTransport]) {
      const transport = make({
        baseUrl: base,
        httpVersion: "1.1",
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${TOKENS.reader}`);
            return next(req);
          },
        ],
      });
      const client = createConnectClient(ExperimentService, transport);
      const got: string[] = [];
      let batches = 0;
      for await (const batch of client.exportAssignments({ experimentKey: "shared", batchSize: 2 })) {
        got.push(...batch.unitIds);
        batches++;
      }
      expect(got).toEqual(viaGrpc);
      expect(batches).toBe(Math.ceil(viaGrpc.length / 2));
    }
  });

  it("request streams (ImportAssignments, StreamAssign) answer UNIMPLEMENTED naming the gRPC port", async () => {
    for (const path of ["assignment.v1.ExperimentService/ImportAssignments", "assignment.v1.AssignmentService/StreamAssign"]) {
      const r = await post(path, {}, TOKENS.admin);
      expect(r.status, path).toBe(501);
      expect(r.body.code).toBe("unimplemented");
      expect(r.body.message).toContain(`served over gRPC only (${t.server.address})`);
      const web = await fetch(`${base}/${path}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: new Uint8Array(5),
      });
      expect(web.headers.get("grpc-status")).toBe("12");
      expect(decodeURIComponent(web.headers.get("grpc-message") ?? "")).toContain("served over gRPC only");
    }
  });
});

describe("buf curl", () => {
  for (const protocol of ["connect", "grpcweb"]) {
    it(`--protocol ${protocol} calls Assign and answers the gRPC answer`, async () => {
      const expected = toJson(AssignmentService.method.assign.output, await assigner.assign({ experimentKey: "shared", unitId: "u-1" }));
      const { stdout } = await run(
        "npx",
        [
          "--no-install",
          "buf",
          "curl",
          "--protocol",
          protocol,
          "--schema",
          "proto",
          "-H",
          `authorization: Bearer ${TOKENS.assign}`,
          "-d",
          '{"experimentKey":"shared","unitId":"u-1"}',
          `${base}/assignment.v1.AssignmentService/Assign`,
        ],
        { cwd: process.cwd(), timeout: 60_000 },
      );
      expect(JSON.parse(stdout)).toEqual(expected);
    });
  }
});

describe("HTTP calls are observed like gRPC calls", () => {
  it("counts them in the same metrics and sends the request id back", async () => {
    const key = 'assignment_grpc_calls_total{service="assignment.v1.AssignmentService",method="Assign",code="OK"}';
    const before = (await scrapeMetrics(t.server.metricsPort!)).get(key) ?? 0;
    const r = await post("assignment.v1.AssignmentService/Assign", { experimentKey: "shared", unitId: "u-1" }, TOKENS.assign, {
      "x-request-id": "from-the-caller-7",
    });
    expect(r.status).toBe(200);
    expect(r.headers.get("x-request-id")).toBe("from-the-caller-7");
    expect((await scrapeMetrics(t.server.metricsPort!)).get(key)).toBe(before + 1);
  });
});
