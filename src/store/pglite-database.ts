import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { PGlite, types, type Transaction } from "@electric-sql/pglite";
import type { Database, Notifications, Queryable, QueryResult, Session } from "./database.js";
import { type MigrateOptions, type MigrationClient, runMigrations } from "./migrations.js";
import { rethrowStoreError } from "./pg-errors.js";

export interface PgliteDatabaseOptions {
  /** Folder holding the database (created when missing), or `memory://` for a throwaway one. */
  dataDir: string;
}

/**
 * node-postgres answers int8 and numeric as strings (they may not fit a JS number); PGlite parses
 * them to numbers. The stores were written against node-postgres, so PGlite is told to do the same.
 */
const PG_COMPATIBLE_PARSERS = {
  [types.INT8]: (v: string) => v,
  [types.NUMERIC]: (v: string) => v,
};

type PgliteResults = { rows: unknown[]; rowCount?: number; affectedRows?: number };

function toResult<R>(r: PgliteResults): QueryResult<R> {
  return { rows: r.rows as R[], rowCount: r.rowCount ?? r.affectedRows ?? r.rows.length };
}

/**
 * The same SQL on an embedded PostgreSQL: PGlite (PostgreSQL compiled to WebAssembly, in this
 * process), its data kept in a local folder. For development and demos: one process, one
 * connection.
 *
 * - PGlite is a single connection, so transactions are serialized: `transaction()` uses PGlite's
 *   own transaction(), which holds its transaction lock; queries outside a transaction wait for it.
 * - Its one connection is its one session: `session()` hands out that shared session (temporary
 *   tables last between statements; transactions only through `transaction`).
 * - NOTIFY reaches listeners of the same instance (the only one), so LISTEN works unchanged.
 * - Migrations are node-pg-migrate's, run through a small adapter with the pg-like `query()` its
 *   runner accepts as `dbClient` (statements without parameters go through PGlite's `exec()`, which
 *   accepts several statements, as a migration file has).
 * - There is no COPY FROM STDIN stream (`bulkCopy` is null): imports stage rows with INSERT …
 *   SELECT FROM unnest and exports page with SELECT instead.
 * - Its errors carry SQLSTATE codes as node-postgres's do, and are mapped the same way (pg-errors.ts).
 * - A data folder must not be opened by two processes at once: a `<dataDir>.lock` file holding the
 *   owner's pid refuses a second one (a lock left by a dead process is taken over).
 */
export class PgliteDatabase implements Database {
  private closed = false;

  /** The connection never drops, so `onReconnect` is never called. */
  readonly notifications: Notifications = {
    listen: async (channel, onNotify) => {
      await this.pg.listen(channel, onNotify);
    },
    query: (text, values) => this.query(text, values),
  };
  readonly bulkCopy = null;
  /** One process owns the folder (see the class comment). */
  readonly advisoryLocks = null;

  private constructor(
    readonly pg: PGlite,
    readonly dataDir: string,
    private readonly releaseLock: () => void,
  ) {}

  static async open(options: PgliteDatabaseOptions): Promise<PgliteDatabase> {
    const inMemory = options.dataDir.startsWith("memory://");
    let releaseLock = () => {};
    let dataDir = options.dataDir;
    if (!inMemory) {
      dataDir = path.resolve(options.dataDir.replace(/^file:\/\//, ""));
      mkdirSync(dataDir, { recursive: true });
      releaseLock = lockDataDir(dataDir);
    }
    try {
      const pg = await PGlite.create(dataDir, { parsers: PG_COMPATIBLE_PARSERS });
      return new PgliteDatabase(pg, dataDir, releaseLock);
    } catch (err) {
      releaseLock();
      throw err;
    }
  }

  async query<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      return toResult<R>(await this.pg.query(text, values));
    } catch (err) {
      return rethrowStoreError(err);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    try {
      return await this.pg.transaction(async (t: Transaction) =>
        fn({
          async query<R>(text: string, values?: unknown[]) {
            return toResult<R>(await t.query(text, values));
          },
        }),
      );
    } catch (err) {
      return rethrowStoreError(err);
    }
  }

  /** The one session, shared (see the class comment); releasing it does nothing. */
  async session(): Promise<Session> {
    return { query: (text, values) => this.query(text, values), transaction: (fn) => this.transaction(fn), release() {} };
  }

  async migrate(options?: MigrateOptions): Promise<void> {
    await runMigrations(this.migrationClient(), options);
  }

  /**
   * The part of a node-postgres client that node-pg-migrate's runner uses: `query(text, values)`
   * answering `{ rows }`. Migration files hold several statements, which only the simple query
   * protocol (PGlite's `exec()`) accepts; parameterized statements use `query()`.
   */
  private migrationClient(): MigrationClient {
    const pg = this.pg;
    return {
      async query(textOrConfig: string | { text: string; values?: unknown[] }, values?: unknown[]) {
        const text = typeof textOrConfig === "string" ? textOrConfig : textOrConfig.text;
        const params = typeof textOrConfig === "string" ? values : (textOrConfig.values ?? values);
        if (params && params.length > 0) return toResult(await pg.query(text, params));
        const results = await pg.exec(text);
        const last = results[results.length - 1] ?? { rows: [] };
        return toResult(last);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.pg.close();
    } finally {
      this.releaseLock();
    }
  }
}

/** Takes `<dataDir>.lock` for this process; throws when a live process holds it. */
function lockDataDir(dataDir: string): () => void {
  const lockFile = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        process.removeListener("exit", release);
        rmSync(lockFile, { force: true });
      };
      process.once("exit", release);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(lockFile, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new Error(
          `the embedded database ${dataDir} is in use by process ${owner} (${lockFile}); stop it or choose another PGLITE_DATA_DIR`,
        );
      }
      if (owner === process.pid) {
        throw new Error(`the embedded database ${dataDir} is already open in this process`);
      }
      rmSync(lockFile, { force: true }); // left behind by a process that is gone
    }
  }
  throw new Error(`cannot lock the embedded database ${dataDir} (${lockFile})`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
