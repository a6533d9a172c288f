/**
 * Per-test-file isolation on top of the servers from ./global-setup.ts.
 *
 * Test files run in parallel worker processes against ONE PostgreSQL server, ONE Redis server and
 * ONE NATS server, so each file must use:
 *   - its own database:   const db = await freshDatabase(); ... await db.drop();
 *   - its own key prefix: const prefix = freshRedisPrefix(); ... await flushPrefix(redisUrl(), prefix);
 *   - its own NATS stream and subject names (e.g. with uniqueHex()), deleted afterwards.
 */
import { inject } from "vitest";
import { createDatabase, uniqueHex, type FreshDatabase } from "../../harness/databases.js";

export { flushPrefix, uniqueHex, withDatabase } from "../../harness/databases.js";

/** URL of the PostgreSQL server (its admin database), from global setup. */
export function serverDatabaseUrl(): string {
  return inject("databaseUrl");
}

/** An empty database with a unique name (`t_<hex>`) on the test server; `drop()` removes it,
 * disconnecting any leftover clients. */
export function freshDatabase(): Promise<FreshDatabase> {
  return createDatabase(serverDatabaseUrl(), "t_");
}

/** URL of the Redis server, from global setup. */
export function redisUrl(): string {
  return inject("redisUrl");
}

/** A unique key prefix (`t:<hex>:`); call once per test file and put every key under it. */
export function freshRedisPrefix(): string {
  return `t:${uniqueHex()}:`;
}

/** URL of the NATS server (JetStream enabled), from global setup. */
export function natsUrl(): string {
  return inject("natsUrl");
}
