import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { runner } from "node-pg-migrate";
import { unavailable } from "../errors.js";
import type { Database, Queryable, QueryResult } from "./database.js";

/** migrations/ at the package root: two levels up from src/store, three from dist/src/store. */
export const MIGRATIONS_DIR =
  [new URL("../../migrations", import.meta.url), new URL("../../../migrations", import.meta.url)]
    .map((u) => fileURLToPath(u))
    .find((dir) => existsSync(dir)) ?? fileURLToPath(new URL("../../migrations", import.meta.url));

/** SQLSTATE classes and Node socket errors that mean "the database cannot be reached now". */
function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? "";
  if (/^(08|57P|53)/.test(code)) return true; // connection exception, operator intervention, insufficient resources
  if (["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"].includes(code)) return true;
  const msg = e?.message ?? "";
  // 55000 "database … is not currently accepting connections" (ALLOW_CONNECTIONS false) is a refused
  // connection too; matched by message, since 55000 alone also covers unrelated state errors.
  return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect|is not currently accepting connections/i.test(
    msg,
  );
}

/** Rethrows connection failures as UNAVAILABLE, anything else unchanged. */
export function mapDatabaseError(err: unknown): never {
  if (isConnectionError(err)) throw unavailable(`database unavailable: ${(err as Error).message}`);
  throw err;
}

export interface PgDatabaseOptions {
  url: string;
  /** Pool size; default 20. */
  max?: number;
  log?: (msg: string) => void;
}

export class PgDatabase implements Database {
  readonly pool: pg.Pool;
  private listener: pg.Client | undefined;
  private closed = false;

  constructor(private readonly options: PgDatabaseOptions) {
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.max ?? 20,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      application_name: "assignment-server",
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on("error", (err) => options.log?.(`idle database connection lost: ${err.message}`));
  }

  async query<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      const r = await this.pool.query(text, values as unknown[]);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    } catch (err) {
      return mapDatabaseError(err);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      return mapDatabaseError(err);
    }
    const tx: Queryable = {
      async query<R>(text: string, values?: unknown[]) {
        const r = await client.query(text, values as unknown[]);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
    };
    let broken = false;
    try {
      await client.query("BEGIN");
      const result = await fn(tx);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      try {
        await client.query("ROLLBACK");
      } catch {
        broken = true;
      }
      if (isConnectionError(err)) broken = true;
      return mapDatabaseError(err);
    } finally {
      client.release(broken);
    }
  }

  async listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void> {
    const connect = async (): Promise<void> => {
      const client = new pg.Client({ connectionString: this.options.url, application_name: "assignment-server-listen" });
      client.on("notification", (n) => {
        if (n.channel === channel) onNotify(n.payload ?? "");
      });
      const retry = () => {
        if (this.closed) return;
        client.removeAllListeners("error");
        client.on("error", () => {});
        client.end().catch(() => {});
        this.listener = undefined;
        setTimeout(() => {
          connect().then(onReconnect, () => retry());
        }, 500).unref();
      };
      client.on("error", (err) => {
        this.options.log?.(`config listener lost its connection: ${err.message}`);
        retry();
      });
      client.on("end", () => {
        if (!this.closed && this.listener === client) retry();
      });
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      this.listener = client;
    };
    await connect();
  }

  async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await runner({
        dbClient: client,
        dir: MIGRATIONS_DIR,
        direction: "up",
        migrationsTable: "schema_migrations",
        count: Infinity,
        log: () => {},
        singleTransaction: true,
        // Several servers may start at once: the others wait for the first one's migrations
        // (node-pg-migrate's default, "fail", made them exit with "Another migration is already running").
        advisoryLockMode: "wait",
      });
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.pool.end();
  }
}
