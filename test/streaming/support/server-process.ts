/**
 * A server in its own process, for tests that measure its memory or send it signals
 * (started by ./child-server.ts as `node --import tsx <this file>`: one process, so the pid is the
 * server's own).
 *
 * CHILD_MODE=server (default): calls startServer (port 0) with DATABASE_URL, REDIS_URL,
 *   REDIS_PREFIX and prints one JSON line `{"childServer":{"port":N,"pid":P}}` on stdout. It
 *   handles SIGTERM/SIGINT exactly like src/main.ts (server.close(), then exit 0; exit 1 if close
 *   fails).
 * CHILD_MODE=main: runs src/main.ts itself (PORT=0, configured through its environment, see
 *   src/config.ts), so that its own signal handling is what is tested; the port is read from its
 *   "serving" log line (LOG_LEVEL must let info through).
 *
 * Either way it exits when its stdin closes (the test process died), so it never outlives the
 * tests.
 */
import { createLogger } from "../../../src/logger.js";
import { closeOnSignals, startServer } from "../../../src/server.js";

const env = process.env;

function required(name: string): string {
  const v = env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

// Diagnostics: with --expose-gc, SIGUSR2 collects garbage and prints the memory then in use.
process.on("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write(JSON.stringify({ childMemory: process.memoryUsage() }) + "\n");
});

// The parent holds our stdin open; EOF means it is gone.
process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(2));
process.stdin.on("error", () => process.exit(2));

if (env.CHILD_MODE === "main") {
  env.PORT = "0";
  env.HOST = "127.0.0.1";
  await import("../../../src/main.js");
} else {
  const log = createLogger(env.LOG_LEVEL ?? "warn");
  const server = await startServer({
    databaseUrl: required("DATABASE_URL"),
    redisUrl: required("REDIS_URL"),
    redisPrefix: required("REDIS_PREFIX"),
    host: "127.0.0.1",
    port: 0,
    logger: log,
  });
  process.stdout.write(JSON.stringify({ childServer: { port: server.port, pid: process.pid } }) + "\n");
  closeOnSignals(server, log); // as src/main.ts does
}
