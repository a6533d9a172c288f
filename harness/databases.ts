/**
 * Isolation on a shared PostgreSQL and Redis: a fresh database per user (test file, benchmark
 * run), a Redis key prefix removed afterwards.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";

/** 12 random hex digits, for names that must not collide. */
export const uniqueHex = (): string => randomBytes(6).toString("hex");

/** Same URL with only the database (path) component replaced; user, password, host, port and
 * query parameters are kept. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** One statement on its own connection (gives up connecting after 5 s). */
export async function adminQuery<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

export interface FreshDatabase {
  name: string;
  url: string;
  /** Removes it, disconnecting any client still on it. */
  drop(): Promise<void>;
}

/** An empty database `<namePrefix><hex>` on the server of `adminUrl` (where this user may CREATE
 * DATABASE). */
export async function createDatabase(adminUrl: string, namePrefix: string): Promise<FreshDatabase> {
  const name = `${namePrefix}${uniqueHex()}`;
  // CREATE DATABASE copies template1 and fails with 55006 (object_in_use) while anyone else is
  // connected to it, as another CREATE DATABASE is for a moment: retry briefly.
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== "55006" || attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    drop: async () => void (await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)),
  };
}

/** A Redis client that fails at once instead of retrying (for setup and cleanup work). */
export function oneShotRedis(url: string): Redis {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on("error", () => {});
  return r;
}

/** Deletes every key starting with `prefix` (SCAN + UNLINK; other keys are untouched). Returns
 * how many were removed. */
export async function flushPrefix(url: string, prefix: string): Promise<number> {
  const r = oneShotRedis(url);
  let removed = 0;
  try {
    await r.connect();
    // Glob metacharacters escaped: the prefix is matched literally.
    const match = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", match, "COUNT", 1000);
      if (keys.length > 0) removed += await r.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
  return removed;
}
