/**
 * What the benchmark needs around the server, beyond harness/ (shared with the tests: fresh
 * database, Redis prefix, server processes, cleanup): a readable message when PostgreSQL or Redis
 * is unreachable, and server processes whose output goes to stderr.
 */
import { Cleanup } from "../harness/cleanup.js";
import { adminQuery, createDatabase, flushPrefix, oneShotRedis } from "../harness/databases.js";
import { spawnServer, type ServerProcess, type ServerProcessMode } from "../harness/spawn-server.js";
import { redactUrl } from "../src/util/redact-url.js";

export { redactUrl };

export const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

/** PostgreSQL or Redis cannot be reached: a message for the user, not a stack trace. */
export class Unreachable extends Error {}

/** Server version and durability settings; throws Unreachable when unreachable. */
export async function probePostgres(url: string): Promise<string> {
  try {
    const [r] = await adminQuery<{ v: string; sc: string; fsync: string }>(
      url,
      "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync",
    );
    return `PostgreSQL ${r.v} (synchronous_commit=${r.sc}, fsync=${r.fsync})`;
  } catch (err) {
    throw new Unreachable(
      `cannot reach PostgreSQL at ${redactUrl(url)}: ${(err as Error).message || String(err)}\n` +
        `        start it, or point DATABASE_URL at a server where this user may CREATE DATABASE.`,
    );
  }
}

/** Redis's version; throws Unreachable when unreachable. */
export async function probeRedis(url: string): Promise<string> {
  const r = oneShotRedis(url);
  let socketError: Error | undefined;
  r.on("error", (err: Error) => (socketError ??= err));
  try {
    await r.connect();
    const info = await r.info("server");
    return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"}`;
  } catch (err) {
    throw new Unreachable(
      `cannot reach Redis at ${redactUrl(url)}: ${(socketError ?? (err as Error)).message || String(err)}\n        start it, or set REDIS_URL.`,
    );
  } finally {
    r.disconnect();
  }
}

/** harness/server-process in the given mode, its output forwarded to stderr prefixed with the
 * label; `nodeArgs` (such as --cpu-prof) apply to the server itself. */
export function startServerChild(
  label: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
  mode: ServerProcessMode = "server",
  script?: string,
): Promise<ServerProcess> {
  return spawnServer({ label, mode, env, nodeArgs, forwardOutput: true, startTimeoutMs: 30_000, script });
}

/**
 * What the streaming benchmarks start from: PostgreSQL and Redis probed (and named in the log), a
 * fresh database and Redis prefix, and one server on them (LOG_LEVEL warn); all removed by
 * `cleanup`.
 */
export async function benchServer(
  cleanup: Cleanup,
  o: {
    adminDatabaseUrl: string;
    redisUrl: string;
    nodeArgs: string[];
    env?: (db: { name: string; url: string }) => Record<string, string>;
  },
): Promise<{ db: { name: string; url: string }; prefix: string; server: ServerProcess }> {
  log(`${await probePostgres(o.adminDatabaseUrl)}; ${await probeRedis(o.redisUrl)}`);
  const db = await createDatabase(o.adminDatabaseUrl, "bench_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const prefix = `bench:${db.name}:`;
  cleanup.add(`remove Redis keys ${prefix}*`, async () => void (await flushPrefix(o.redisUrl, prefix)));
  const server = await startServerChild(
    "server",
    { DATABASE_URL: db.url, REDIS_URL: o.redisUrl, REDIS_PREFIX: prefix, LOG_LEVEL: "warn", ...o.env?.(db) },
    o.nodeArgs,
  );
  cleanup.add("stop server", server.stop);
  return { db, prefix, server };
}

/**
 * Runs a benchmark's `main` as the process: its cleanup runs however it ends (done, failed,
 * SIGINT/SIGTERM); exit code 2 when a service it needs cannot be reached (Unreachable), 1 on any
 * other failure, 130 when interrupted.
 */
export async function runBench(main: (cleanup: Cleanup) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup({ name: "bench" });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void cleanup.run().finally(() => process.exit(130)));
  try {
    await main(cleanup);
    await cleanup.run();
  } catch (err) {
    log(err instanceof Unreachable ? err.message : `failed: ${(err as Error).stack ?? err}`);
    await cleanup.run();
    process.exit(err instanceof Unreachable ? 2 : 1);
  }
}
