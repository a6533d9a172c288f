/**
 * The TypeScript client's retries: grpc-js's own retryPolicy, from a service config derived from
 * the descriptors: on UNAVAILABLE, for the methods the proto declares idempotent (idempotency_level
 * NO_SIDE_EFFECTS or IDEMPOTENT) and that do not stream requests, with exponential backoff and
 * jitter, within the call's deadline. Against real gRPC servers on loopback whose handlers count
 * the calls they see; no database needed.
 *
 * Imported through the client package (packages/client, "assignment-client"), as another project
 * would.
 */
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  AssignmentService,
  createClient,
  DEFAULT_RETRY,
  ExperimentService,
  isRetryable,
  retryServiceConfig,
  type ClientOptions,
} from "assignment-client";
import { ServiceError } from "../../src/errors.js";
import { bindService } from "../../src/grpc/bind-service.js";
import type { CallContext } from "../../src/service/handler-types.js";
import { failure, sleep } from "./helpers.js";
import { freePort } from "../../harness/free-port.js";

type Behaviour = (method: string, call: number) => "unavailable" | "invalid" | "ok" | "ok-then-unavailable";

interface Stub {
  port: number;
  /** Calls seen, per method name. */
  calls: Map<string, number>;
  /** The authorization header of every call seen. */
  tokens: (string | undefined)[];
  stop(): Promise<void>;
}

const unavailable = () => new ServiceError(grpc.status.UNAVAILABLE, "stub: try again");

/** A real gRPC server serving both services; each call does what `behaviour` says. */
async function startStub(behaviour: Behaviour, port = 0): Promise<Stub> {
  const calls = new Map<string, number>();
  const tokens: (string | undefined)[] = [];
  const server = new grpc.Server();
  const handlersFor = (service: DescService) =>
    Object.fromEntries(
      service.methods.map((m) => {
        const count = (ctx: CallContext) => {
          const n = (calls.get(m.name) ?? 0) + 1;
          calls.set(m.name, n);
          tokens.push(ctx.requestHeader.get("authorization") ?? undefined);
          return behaviour(m.name, n);
        };
        const unary = async (_req: unknown, ctx: CallContext) => {
          const b = count(ctx);
          if (b === "invalid") throw new ServiceError(grpc.status.INVALID_ARGUMENT, "stub: bad");
          if (b !== "ok") throw unavailable();
          return m.name === "Assign" ? { assignment: { experimentKey: "e", variantKey: "a" } } : {};
        };
        const streaming = async function* (_req: unknown, ctx: CallContext) {
          const b = count(ctx);
          if (b === "unavailable") throw unavailable();
          yield { experimentKey: "e", unitIds: ["u-1"] };
          if (b === "ok-then-unavailable") throw unavailable();
          yield { experimentKey: "e", unitIds: ["u-2"] };
        };
        const kind = m.methodKind;
        const requestsIn = async (requests: AsyncIterable<unknown>, ctx: CallContext) => {
          for await (const _ of requests) {
            // drain
          }
          return unary(undefined, ctx);
        };
        const handler =
          kind === "unary"
            ? unary
            : kind === "server_streaming"
              ? streaming
              : kind === "client_streaming"
                ? requestsIn
                : // biome-ignore lint/correctness/useYield: a bidi handler that answers nothing
                  async function* (requests: AsyncIterable<unknown>, ctx: CallContext) {
                    await requestsIn(requests, ctx);
                  };
        return [m.localName, handler];
      }),
    );
  for (const service of [AssignmentService, ExperimentService] as DescService[]) {
    const bound = bindService(service, handlersFor(service) as never, { log: () => {} });
    server.addService(bound.definition, bound.implementation);
  }
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port: bound, calls, tokens, stop: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function clients(port: number, retry?: ClientOptions["retry"], timeoutMs = 10_000) {
  const options = { timeoutMs, token: "secret", retry, channelOptions: { "grpc.use_local_subchannel_pool": 1 } };
  const assignments = createClient(AssignmentService, `127.0.0.1:${port}`, options);
  const experiments = createClient(ExperimentService, `127.0.0.1:${port}`, options);
  cleanups.push(
    () => assignments.close(),
    () => experiments.close(),
  );
  return { assignments, experiments };
}

async function stub(behaviour: Behaviour, port?: number) {
  const s = await startStub(behaviour, port);
  cleanups.push(() => s.stop());
  return s;
}

describe("which calls are retried", () => {
  it("follows the proto's idempotency_level: reads and the sticky assignment calls, never request streams", () => {
    const retryable = [...AssignmentService.methods, ...ExperimentService.methods].filter(isRetryable).map((m) => m.name);
    expect(retryable.sort()).toEqual(
      [
        "Assign",
        "AssignUnit",
        "BulkAssign",
        "MatrixAssign",
        "ResolveParams",
        "BulkResolveParams",
        "GetExperiment",
        "ListExperiments",
        "GetNamespace",
        "ListNamespaces",
        "GetExperimentStats",
        "ListOverrides",
        "ExportAssignments",
        "ListChanges",
        "WatchAssignments",
        "GetHoldout",
        "ListHoldouts",
        "GetHoldoutStats",
      ].sort(),
    );
  });

  it("defaults to 4 attempts, waits of at most 50 ms doubling up to 2 s, on UNAVAILABLE (the Python package's policy)", () => {
    expect(DEFAULT_RETRY).toEqual({
      maxAttempts: 4,
      initialBackoffMs: 50,
      maxBackoffMs: 2000,
      backoffMultiplier: 2,
      retryableStatusCodes: ["UNAVAILABLE"],
    });
  });

  it("hands grpc-js a service config naming exactly the retryable methods, with the policy in gRPC's JSON form", () => {
    expect(retryServiceConfig([AssignmentService, ExperimentService], { maxAttempts: 5, initialBackoffMs: 100 })).toEqual({
      methodConfig: [
        {
          name: [
            { service: "assignment.v1.AssignmentService", method: "Assign" },
            { service: "assignment.v1.AssignmentService", method: "AssignUnit" },
            { service: "assignment.v1.AssignmentService", method: "BulkAssign" },
            { service: "assignment.v1.AssignmentService", method: "MatrixAssign" },
            { service: "assignment.v1.AssignmentService", method: "ResolveParams" },
            { service: "assignment.v1.AssignmentService", method: "BulkResolveParams" },
            { service: "assignment.v1.ExperimentService", method: "GetExperiment" },
            { service: "assignment.v1.ExperimentService", method: "ListExperiments" },
            { service: "assignment.v1.ExperimentService", method: "GetNamespace" },
            { service: "assignment.v1.ExperimentService", method: "ListNamespaces" },
            { service: "assignment.v1.ExperimentService", method: "ListOverrides" },
            { service: "assignment.v1.ExperimentService", method: "GetExperimentStats" },
            { service: "assignment.v1.ExperimentService", method: "ExportAssignments" },
            { service: "assignment.v1.ExperimentService", method: "ListChanges" },
            { service: "assignment.v1.ExperimentService", method: "WatchAssignments" },
            { service: "assignment.v1.ExperimentService", method: "GetHoldout" },
            { service: "assignment.v1.ExperimentService", method: "ListHoldouts" },
            { service: "assignment.v1.ExperimentService", method: "GetHoldoutStats" },
          ],
          retryPolicy: {
            maxAttempts: 5,
            initialBackoff: "0.1s",
            maxBackoff: "2s",
            backoffMultiplier: 2,
            retryableStatusCodes: ["UNAVAILABLE"],
          },
        },
      ],
    });
  });

  it("refuses a policy gRPC would not follow, naming the setting", () => {
    expect(() => clients(1, { maxAttempts: 6 })).toThrow("retry.maxAttempts: must be 2..5");
    expect(() => clients(1, { maxAttempts: 1 })).toThrow("retry.maxAttempts: must be 2..5");
    expect(() => clients(1, { initialBackoffMs: 0 })).toThrow("retry.initialBackoffMs");
    expect(() => clients(1, { initialBackoffMs: 500, maxBackoffMs: 100 })).toThrow("retry.maxBackoffMs");
  });
});

describe("retries on UNAVAILABLE", () => {
  it("rides out a server that starts listening 100 ms after the call", async () => {
    const port = await freePort();
    // Waits of up to 300, 600, 1200, 2000 ms: the four retries cannot all be spent in 100 ms
    // (unless each drew a wait near 0, a chance of about 1 in 40,000).
    const { assignments } = clients(port, { maxAttempts: 5, initialBackoffMs: 300, maxBackoffMs: 2_000 });
    const started = Date.now();
    const call = assignments.assign({ experimentKey: "e", unitId: "u-1" });
    await sleep(100);
    const s = await stub(() => "ok", port);
    const res = await call;
    expect(res.assignment?.variantKey).toBe("a");
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    // The attempt that got through carried the token like the first one would have.
    expect(s.calls.get("Assign")).toBe(1);
    expect(s.tokens).toEqual(["Bearer secret"]);
  });

  it("does not retry a non-idempotent call: UNAVAILABLE at once, and the server that comes up never sees it", async () => {
    const port = await freePort();
    const { experiments } = clients(port, { maxAttempts: 5 });
    const started = Date.now();
    const f = failure(experiments.createExperiment({ key: "e", variants: [{ key: "a", weight: 10_000 }] }));
    setTimeout(() => void stub(() => "ok", port).then((s) => (late = s)), 300);
    let late: Stub | undefined;
    expect((await f).code).toBe(grpc.status.UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(300);
    await sleep(600);
    expect(late?.calls.get("CreateExperiment")).toBeUndefined();
  });

  it("with the defaults: a server answering UNAVAILABLE twice is asked a third time, with the same token", async () => {
    const s = await stub((_m, n) => (n <= 2 ? "unavailable" : "ok"));
    const { assignments } = clients(s.port);
    expect((await assignments.assign({ experimentKey: "e", unitId: "u-1" })).assignment?.variantKey).toBe("a");
    expect(s.calls.get("Assign")).toBe(3);
    expect(s.tokens).toEqual(["Bearer secret", "Bearer secret", "Bearer secret"]);
  });

  it("gives up after maxAttempts with the last UNAVAILABLE; reads (NO_SIDE_EFFECTS) alike", async () => {
    const s = await stub(() => "unavailable");
    const { assignments, experiments } = clients(s.port);
    expect((await failure(assignments.bulkAssign({ experimentKey: "e", unitIds: ["u"] }))).code).toBe(grpc.status.UNAVAILABLE);
    expect(s.calls.get("BulkAssign")).toBe(DEFAULT_RETRY.maxAttempts);
    expect((await failure(experiments.getExperiment({ key: "e" }))).code).toBe(grpc.status.UNAVAILABLE);
    expect(s.calls.get("GetExperiment")).toBe(DEFAULT_RETRY.maxAttempts);
  });

  it("never retries admin mutations or request streams, even when the server says UNAVAILABLE", async () => {
    const s = await stub(() => "unavailable");
    const { assignments, experiments } = clients(s.port, { maxAttempts: 5 });
    const one = async (name: string, call: () => Promise<unknown>) => {
      expect((await failure(call())).code, name).toBe(grpc.status.UNAVAILABLE);
      expect(s.calls.get(name), name).toBe(1);
    };
    await one("CreateExperiment", () => experiments.createExperiment({ key: "e" }));
    await one("UpdateExperiment", () => experiments.updateExperiment({ key: "e" }));
    await one("SetOverrides", () => experiments.setOverrides({ experimentKey: "e" }));
    await one("ImportAssignments", () =>
      experiments.importAssignments(
        (async function* () {
          yield { rows: [] };
        })(),
      ),
    );
    await one("CopyAssignments", async () => {
      for await (const _ of experiments.copyAssignments({ sourceExperimentKey: "a", targetExperimentKey: "b" })) {
        // nothing
      }
    });
    await one("StreamAssign", async () => {
      for await (const _ of assignments.streamAssign(
        (async function* () {
          yield { unitIds: ["u"] };
        })(),
      )) {
        // nothing
      }
    });
  });

  it("does not retry other codes", async () => {
    const s = await stub(() => "invalid");
    const { assignments } = clients(s.port);
    expect((await failure(assignments.assign({ experimentKey: "e", unitId: "u" }))).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(s.calls.get("Assign")).toBe(1);
  });

  it("stays within the call's deadline", async () => {
    const s = await stub(() => "unavailable");
    const { assignments } = clients(s.port, { maxAttempts: 5, initialBackoffMs: 1_000, maxBackoffMs: 1_000, backoffMultiplier: 1 }, 350);
    const started = Date.now();
    const f = await failure(assignments.assign({ experimentKey: "e", unitId: "u" }));
    // The last UNAVAILABLE, or DEADLINE_EXCEEDED when the last attempt started just before it.
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(f.code);
    expect(Date.now() - started).toBeLessThan(500);
    // Waits of 0..1000 ms: the deadline ends the call whatever attempts are left.
    expect(s.calls.get("Assign")).toBeGreaterThanOrEqual(1);
    expect(s.calls.get("Assign")).toBeLessThanOrEqual(5);
  });

  it("can be turned off, or given fewer attempts, per client", async () => {
    const s = await stub(() => "unavailable");
    const off = clients(s.port, false);
    await failure(off.assignments.assign({ experimentKey: "e", unitId: "u" }));
    expect(s.calls.get("Assign")).toBe(1);
    const two = clients(s.port, { maxAttempts: 2 });
    await failure(two.assignments.assign({ experimentKey: "e", unitId: "u" }));
    expect(s.calls.get("Assign")).toBe(3);
  });

  it("stops waiting when the caller aborts during a backoff", async () => {
    const s = await stub(() => "unavailable");
    const { assignments } = clients(s.port, { maxAttempts: 5, initialBackoffMs: 2_000, maxBackoffMs: 2_000, backoffMultiplier: 1 });
    const controller = new AbortController();
    const started = Date.now();
    const f = failure(assignments.assign({ experimentKey: "e", unitId: "u" }, { signal: controller.signal }));
    await sleep(200);
    controller.abort();
    expect((await f).code).toBe(grpc.status.CANCELLED);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(s.calls.get("Assign")).toBe(1);
  });

  it("restarts a read stream that failed before its first message, never one that delivered", async () => {
    const restarted = await stub((_m, n) => (n === 1 ? "unavailable" : "ok"));
    const a = clients(restarted.port);
    const got: string[] = [];
    for await (const r of a.experiments.exportAssignments({ experimentKey: "e" })) got.push(...r.unitIds);
    expect(got).toEqual(["u-1", "u-2"]);
    expect(restarted.calls.get("ExportAssignments")).toBe(2);

    const broken = await stub(() => "ok-then-unavailable");
    const b = clients(broken.port);
    const partial: string[] = [];
    const f = failure(
      (async () => {
        for await (const r of b.experiments.exportAssignments({ experimentKey: "e" })) partial.push(...r.unitIds);
      })(),
    );
    expect((await f).code).toBe(grpc.status.UNAVAILABLE);
    expect(partial).toEqual(["u-1"]);
    expect(broken.calls.get("ExportAssignments")).toBe(1);
  });
});
