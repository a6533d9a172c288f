/**
 * Per-test-file isolation on top of the servers from ./global-setup.ts.
 *
 * Test files run in parallel worker processes against ONE PostgreSQL server
 * and ONE Redis server, so each file must use:
 *   - its own database:   const db = await freshDatabase(); ... await db.drop();
 *   - its own key prefix: const prefix = freshRedisPrefix(); ... await flushPrefix(redisUrl(), prefix);
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { inject } from "vitest";

const uniqueHex = () => randomBytes(6).toString("hex");

/** URL of the PostgreSQL server (its admin database), from global setup. */
export function serverDatabaseUrl(): string {
  return inject("databaseUrl");
}

/** Same URL with only the database (path) component replaced; user,
 *  password, host, port and query parameters are kept. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverDatabaseUrl() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Creates an empty database with a unique name (`t_<hex>`) on the test server.
 * `url` points at it; `drop()` removes it, disconnecting any leftover clients.
 */
export async function freshDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `t_${uniqueHex()}`;
  // CREATE DATABASE copies template1 and fails with 55006 if someone is
  // connected to it at that moment; retry briefly in that case.
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(`CREATE DATABASE "${name}"`);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== "55006" || attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  return {
    name,
    url: withDatabase(serverDatabaseUrl(), name),
    drop: () => adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  };
}

/** URL of the Redis server, from global setup. */
export function redisUrl(): string {
  return inject("redisUrl");
}

/** A unique key prefix (`t:<hex>:`); call once per test file and put every key under it. */
export function freshRedisPrefix(): string {
  return `t:${uniqueHex()}:`;
}

/** Deletes every key starting with `prefix` (SCAN + UNLINK; other keys are untouched). */
export async function flushPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 3 });
  try {
    // Escape glob metacharacters so the prefix is matched literally.
    const match = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", match, "COUNT", 1000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
