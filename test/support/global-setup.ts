/**
 * Vitest globalSetup: makes one PostgreSQL server, one Redis server and one NATS server (with
 * JetStream) available to every test file, and shares their URLs through `project.provide` (read
 * them in tests through the functions in ./services.ts).
 *
 * Rule: DATABASE_URL / REDIS_URL / NATS_URL are used when set. Otherwise a throwaway server is
 * started on a free loopback port in a temp dir (harness/) and removed again in teardown (also
 * when setup fails halfway, and as a last resort on exit).
 *
 * Test files isolate themselves from each other (fresh database per file, unique Redis key prefix
 * per file, and for NATS their own stream and subject names), so they can run in parallel.
 */
import type { TestProject } from "vitest/node";
import { Cleanup } from "../../harness/cleanup.js";
import { startNats } from "../../harness/nats-server.js";
import { startPostgres } from "../../harness/postgres-server.js";
import { startRedis } from "../../harness/redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Server-level URL (admin database); use freshDatabase() for a per-file DB. */
    databaseUrl: string;
    redisUrl: string;
    /** A NATS server with JetStream. */
    natsUrl: string;
  }
}

const log = (msg: string) => console.error(`[test services] ${msg}`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanup = new Cleanup({ name: "test services", exitBackstop: true });
  const throwaway = async (what: string, start: () => Promise<{ url: string; dir: string }>) => {
    const s = await start();
    log(`started throwaway ${what} at ${s.url} (${s.dir})`);
    return s.url;
  };
  // All three at once; every one settles before a failure is thrown, so the cleanup sees them all.
  const urls = await Promise.allSettled([
    process.env.DATABASE_URL || throwaway("PostgreSQL", () => startPostgres(cleanup, { name: "test-pg", maxConnections: 200 })),
    process.env.REDIS_URL || throwaway("Redis", () => startRedis(cleanup, { name: "test-redis" })),
    process.env.NATS_URL || throwaway("NATS", () => startNats(cleanup, { name: "test-nats" })),
  ]);
  const failed = urls.find((u) => u.status === "rejected");
  if (failed) {
    await cleanup.run();
    throw failed.reason;
  }
  const [databaseUrl, redisUrl, natsUrl] = urls.map((u) => (u as PromiseFulfilledResult<string>).value);
  project.provide("databaseUrl", databaseUrl!);
  project.provide("redisUrl", redisUrl!);
  project.provide("natsUrl", natsUrl!);
  return () => cleanup.run();
}
