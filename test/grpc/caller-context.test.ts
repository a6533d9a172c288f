/**
 * Every handler, of each method kind, sees who called in its CallContext (the token's name and
 * role, as the interceptor found them), and runs only after the interceptor accepted the call.
 * Against a real gRPC server whose handlers record their context; no database needed.
 */
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, createClient, ExperimentService } from "assignment-client";
import { bindService } from "../../src/grpc/bind-service.js";
import { authenticator, TokenSet, tokenDigest } from "../../src/ops/auth.js";
import type { CallContext } from "../../src/service/handler-types.js";
import type { Caller } from "../../src/service/roles.js";
import { failure, status } from "./helpers.js";

const seen: { method: string; caller: Caller }[] = [];
const aborted: string[] = [];
let server: grpc.Server;
let address: string;

beforeAll(async () => {
  server = new grpc.Server();
  const tokens = new TokenSet([
    { name: "ci-admin", role: "admin", digest: tokenDigest("ci-admin-token-0123456789") },
    { name: "ci-reader", role: "reader", digest: tokenDigest("ci-reader-token-0123456789") },
  ]);
  const interceptor = authenticator({ open: new Set(), tokens: () => tokens });
  const record = (ctx: CallContext) => seen.push({ method: ctx.method, caller: ctx.caller });
  const handlersFor = (service: DescService) =>
    Object.fromEntries(
      service.methods.map((m) => {
        const handler =
          m.name === "Assign"
            ? // answers at once, with a value rather than a promise
              (_req: unknown, ctx: CallContext) => {
                record(ctx);
                return {};
              }
            : m.name === "GetExperimentStats"
              ? // answers once its signal is aborted (the caller gave up)
                async (_req: unknown, ctx: CallContext) => {
                  record(ctx);
                  await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
                  aborted.push(ctx.method);
                  return {};
                }
              : m.methodKind === "unary"
                ? async (_req: unknown, ctx: CallContext) => {
                    record(ctx);
                    return {};
                  }
                : m.methodKind === "server_streaming"
                  ? async function* (_req: unknown, ctx: CallContext) {
                      record(ctx);
                      yield {};
                    }
                  : m.methodKind === "client_streaming"
                    ? async (requests: AsyncIterable<unknown>, ctx: CallContext) => {
                        for await (const _ of requests) void _;
                        record(ctx);
                        return {};
                      }
                    : async function* (requests: AsyncIterable<unknown>, ctx: CallContext) {
                        for await (const _ of requests) void _;
                        record(ctx);
                        yield {};
                      };
        return [m.localName, handler];
      }),
    );
  for (const service of [AssignmentService, ExperimentService] as DescService[]) {
    const bound = bindService(service, handlersFor(service) as never, { log: () => {}, interceptor });
    server.addService(bound.definition, bound.implementation);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});
afterAll(() => server?.forceShutdown());

describe("unary handlers", () => {
  it("may answer with a value at once, and see their signal aborted when the caller gives up", async () => {
    const assign = createClient(AssignmentService, address, { token: "ci-admin-token-0123456789", retry: false });
    const reader = createClient(ExperimentService, address, { token: "ci-reader-token-0123456789", retry: false, timeoutMs: 300 });
    try {
      seen.length = 0;
      expect(await assign.assign({ experimentKey: "x", unitId: "u" })).toBeDefined();
      expect(status[(await failure(reader.getExperimentStats({ key: "x" }))).code]).toBe("DEADLINE_EXCEEDED");
      await expect.poll(() => aborted, { timeout: 5_000 }).toEqual(["GetExperimentStats"]);
      expect(seen.map((s) => s.method)).toEqual(["Assign", "GetExperimentStats"]);
    } finally {
      assign.close();
      reader.close();
    }
  });
});

describe("CallContext.caller", () => {
  it("reaches unary, server-streaming, client-streaming and bidi handlers", async () => {
    const admin = createClient(ExperimentService, address, { token: "ci-admin-token-0123456789", retry: false });
    const reader = createClient(ExperimentService, address, { token: "ci-reader-token-0123456789", retry: false });
    const assign = createClient(AssignmentService, address, { token: "ci-admin-token-0123456789", retry: false });
    try {
      seen.length = 0;
      await reader.getExperiment({ key: "x" });
      for await (const _ of reader.exportAssignments({ experimentKey: "x" })) void _;
      await admin.importAssignments(
        (async function* () {
          yield { rows: [] };
        })(),
      );
      for await (const _ of assign.streamAssign(
        (async function* () {
          yield { setup: { experimentKeys: ["x"] } };
        })(),
      ))
        void _;
      expect(seen).toEqual([
        { method: "GetExperiment", caller: { name: "ci-reader", role: "reader" } },
        { method: "ExportAssignments", caller: { name: "ci-reader", role: "reader" } },
        { method: "ImportAssignments", caller: { name: "ci-admin", role: "admin" } },
        { method: "StreamAssign", caller: { name: "ci-admin", role: "admin" } },
      ]);
      // Refused calls never reach a handler.
      seen.length = 0;
      expect(status[(await failure(reader.createExperiment({ key: "x" }))).code]).toBe("PERMISSION_DENIED");
      const unknown = createClient(ExperimentService, address, { token: "someone-else-0123456789", retry: false });
      expect(status[(await failure(unknown.importAssignments((async function* () {})()))).code]).toBe("UNAUTHENTICATED");
      unknown.close();
      expect(seen).toEqual([]);
    } finally {
      admin.close();
      reader.close();
      assign.close();
    }
  });
});
