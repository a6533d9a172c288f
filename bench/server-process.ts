/**
 * The server under benchmark, in its own process (as in production, the client does not share
 * its event loop). Started by bench/run.ts; prints one JSON line `{"benchServer":{"port":N}}` on
 * stdout once it serves. pino logs (level LOG_LEVEL, default warn) also go to stdout as JSON lines.
 *
 * Environment: DATABASE_URL, REDIS_URL, REDIS_PREFIX (required); MEMORY_CACHE_ENTRIES (0 turns the
 * in-process cache off; server default when unset); CACHE_TTL_SECONDS (server default when unset);
 * LOG_LEVEL. BENCH_TRIVIAL=1 serves a bare
 * grpc-js echo method instead (the transport's floor, no protobuf, no handler work).
 *
 * Exits on SIGTERM/SIGINT, and when its stdin closes (the parent died), so it never outlives the
 * benchmark.
 */
import * as grpc from "@grpc/grpc-js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/server.js";

/** Keep in step with TRIVIAL_PATH in bench/scenarios.ts (not imported: importing this file starts a server). */
const TRIVIAL_PATH = "/bench.Trivial/Echo";

const env = process.env;

function required(name: string): string {
  const v = env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function optionalInt(name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer (got ${JSON.stringify(v)})`);
  return n;
}

async function startTrivial(): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService(
    {
      echo: {
        path: TRIVIAL_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    { echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

let running: { port: number; close(): Promise<void> };
try {
  running =
    env.BENCH_TRIVIAL === "1"
      ? await startTrivial()
      : await startServer({
          databaseUrl: required("DATABASE_URL"),
          redisUrl: required("REDIS_URL"),
          redisPrefix: required("REDIS_PREFIX"),
          host: "127.0.0.1",
          port: 0,
          memoryCacheEntries: optionalInt("MEMORY_CACHE_ENTRIES"),
          cacheTtlSeconds: optionalInt("CACHE_TTL_SECONDS"),
          logger: createLogger(env.LOG_LEVEL ?? "warn"),
        });
} catch (err) {
  process.stderr.write(`server-process: start failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}

process.stdout.write(JSON.stringify({ benchServer: { port: running.port, pid: process.pid } }) + "\n");

let stopping = false;
function stop(reason: string): void {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(0), 2_000);
  force.unref();
  running.close().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`server-process: close failed after ${reason}: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
process.once("SIGTERM", () => stop("SIGTERM"));
process.once("SIGINT", () => stop("SIGINT"));
// The parent holds our stdin open; EOF means it is gone.
process.stdin.on("data", () => {});
process.stdin.on("end", () => stop("parent gone"));
process.stdin.on("error", () => stop("parent gone"));
