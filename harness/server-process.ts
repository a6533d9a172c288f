/**
 * The server in a process of its own, as in production (the caller does not share its event
 * loop): started by ./spawn-server.ts, which reads the port it announces. One process (node plus,
 * from source, the tsx loader), so its pid, memory and node flags are the server's own.
 *
 * SERVER_PROCESS_MODE
 *   server (default)  startServer on 127.0.0.1, port 0, from DATABASE_URL, REDIS_URL, REDIS_PREFIX
 *                     (required), DATABASE_DIRECT_URL, DATABASE_READ_URL (comma-separated),
 *                     MEMORY_CACHE_ENTRIES, CACHE_TTL_SECONDS, INSERT_CONCURRENCY,
 *                     INSERT_MAX_WAIT_MS, ROLE, JOB_WORKERS,
 *                     JOB_CHUNK_UNITS, JOB_CHUNK_TIMEOUT_SECONDS, JOB_RETRY_DELAY_SECONDS,
 *                     JOB_MAINTENANCE_SECONDS (server defaults when unset), METRICS_PORT (unset: no
 *                     metrics; 0: a free port), HTTP_PORT (unset: no HTTP port; 0: a free one) and
 *                     LOG_LEVEL (default warn), EVENT_SEQUENCE_MS, EVENTS_NATS_URL (a JetStream sink),
 *                     EVENTS_NATS_STREAM, EVENTS_NATS_SUBJECT_PREFIX, EVENTS_LEASE_RETRY_MS; prints one JSON line
 *                     {"serverProcess":{"port":N,"pid":P,"metricsPort":M,"httpPort":H}}. SIGTERM/SIGINT shut it down exactly as
 *                     src/main.ts does (closeOnSignals: exit 0 once everything was flushed).
 *   main              src/main.ts itself, configured by its environment (src/config.ts), so that its
 *                     own start-up and signal handling are what runs; its "serving" log line
 *                     carries the port.
 *   trivial           a bare grpc-js echo method (./trivial-echo.ts), the benchmark's floor.
 *
 * Always: it exits when its stdin closes (the parent died), so it never outlives its parent; and
 * with --expose-gc, SIGUSR2 collects garbage and prints {"serverMemory": process.memoryUsage()}.
 */
import { createLogger } from "../src/logger.js";
import { closeOnSignals, startServer } from "../src/server.js";
import { startTrivialEcho } from "./trivial-echo.js";

const env = process.env;

process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(2));
process.stdin.on("error", () => process.exit(2));

process.on("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write(`${JSON.stringify({ serverMemory: process.memoryUsage() })}\n`);
});

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

const announce = (port: number, metricsPort?: number, httpPort?: number) =>
  process.stdout.write(`${JSON.stringify({ serverProcess: { port, pid: process.pid, metricsPort, httpPort } })}\n`);
const mode = env.SERVER_PROCESS_MODE ?? "server";

try {
  if (mode === "main") {
    await import("../src/main.js");
  } else if (mode === "trivial") {
    const echo = await startTrivialEcho();
    for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => void echo.close().then(() => process.exit(0)));
    announce(echo.port);
  } else if (mode === "server") {
    const log = createLogger(env.LOG_LEVEL ?? "warn");
    const server = await startServer({
      databaseUrl: required("DATABASE_URL"),
      databaseDirectUrl: env.DATABASE_DIRECT_URL || undefined,
      databaseReadUrls: env.DATABASE_READ_URL ? env.DATABASE_READ_URL.split(",") : undefined,
      redisUrl: required("REDIS_URL"),
      redisPrefix: required("REDIS_PREFIX"),
      host: "127.0.0.1",
      port: 0,
      memoryCacheEntries: optionalInt("MEMORY_CACHE_ENTRIES"),
      cacheTtlSeconds: optionalInt("CACHE_TTL_SECONDS"),
      metricsPort: optionalInt("METRICS_PORT"),
      httpPort: optionalInt("HTTP_PORT"),
      insertConcurrency: optionalInt("INSERT_CONCURRENCY"),
      insertMaxWaitMs: optionalInt("INSERT_MAX_WAIT_MS"),
      role: (env.ROLE as "api" | "worker" | "all" | undefined) ?? "all",
      jobs: {
        workers: optionalInt("JOB_WORKERS"),
        chunkUnits: optionalInt("JOB_CHUNK_UNITS"),
        chunkTimeoutSeconds: optionalInt("JOB_CHUNK_TIMEOUT_SECONDS"),
        retryDelaySeconds: optionalInt("JOB_RETRY_DELAY_SECONDS"),
        maintenanceIntervalSeconds: optionalInt("JOB_MAINTENANCE_SECONDS"),
      },
      // Assignment events: a sink only when EVENTS_NATS_URL names one (not NATS_URL, which a
      // developer may have set for the tests' own NATS).
      events: {
        sequenceMs: optionalInt("EVENT_SEQUENCE_MS"),
        natsUrl: env.EVENTS_NATS_URL,
        natsStream: env.EVENTS_NATS_STREAM,
        natsSubjectPrefix: env.EVENTS_NATS_SUBJECT_PREFIX,
        publisherLeaseRetryMs: optionalInt("EVENTS_LEASE_RETRY_MS"),
      },
      logger: log,
    });
    closeOnSignals(server, log);
    announce(server.port, server.metricsPort, server.httpPort);
  } else {
    throw new Error(`SERVER_PROCESS_MODE must be server, main or trivial (got ${JSON.stringify(mode)})`);
  }
} catch (err) {
  process.stderr.write(`server process: start failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}
