import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { BulkCopy, CopySession, Database, Notifications, Queryable, QueryResult } from "./database.js";
import { DEFAULT_DATABASE_POOL_SIZE } from "../server-defaults.js";
import { type MigrateOptions, runMigrations } from "./migrations.js";
import { unavailable } from "../errors.js";
import { isConnectionError, rethrowStoreError } from "./pg-errors.js";

export interface PgDatabaseOptions {
  url: string;
  /** Pool size; default DEFAULT_DATABASE_POOL_SIZE. */
  max?: number;
  /** How long a caller waits for a free connection before UNAVAILABLE; default 5 s. */
  connectionTimeoutMs?: number;
  /** What PostgreSQL shows of these connections (pg_stat_activity); default "assignment-server". */
  applicationName?: string;
  log?: (msg: string) => void;
}

function resultOf<R>(r: pg.QueryResult): QueryResult<R> {
  return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
}

/** A pooled connection of the caller's own (see Session and CopySession). */
class PgSession implements CopySession {
  private broken = false;
  private released = false;

  constructor(private readonly client: pg.PoolClient) {
    // A connection lost while the session is held between queries (a lease, an upload waiting for
    // its client) emits 'error' on a client the pool no longer watches: unhandled, it would end
    // the process. The session is broken instead; its next query fails and its owner starts over.
    client.on("error", this.onError);
  }

  private readonly onError = () => {
    this.broken = true;
  };

  async query<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      return resultOf<R>(await this.client.query(text, values));
    } catch (err) {
      if (isConnectionError(err)) this.broken = true;
      return rethrowStoreError(err);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = this.client;
    const tx: Queryable = {
      async query<R>(text: string, values?: unknown[]) {
        return resultOf<R>(await client.query(text, values));
      },
    };
    try {
      await client.query("BEGIN");
      const result = await fn(tx);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      try {
        await client.query("ROLLBACK");
      } catch {
        this.broken = true;
      }
      if (isConnectionError(err)) this.broken = true;
      return rethrowStoreError(err);
    }
  }

  async copyFrom(sql: string, chunks: Iterable<Buffer>): Promise<void> {
    try {
      await pipeline(Readable.from(chunks), this.client.query(copyFrom(sql)));
    } catch (err) {
      if (isConnectionError(err)) this.broken = true;
      return rethrowStoreError(err);
    }
  }

  async *copyTo(sql: string): AsyncGenerator<Buffer> {
    const stream = this.client.query(copyTo(sql));
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } catch (err) {
      this.broken = true;
      return rethrowStoreError(err);
    } finally {
      // A consumer that stops early (a cancelled call) leaves the COPY unfinished: that connection
      // cannot be reused.
      if (!stream.readableEnded) {
        this.broken = true;
        stream.destroy();
      }
    }
  }

  release(broken = false): void {
    if (this.released) return;
    this.released = true;
    const gone = broken || this.broken;
    // A client going back to the pool is watched by the pool again; a broken one keeps this
    // listener until it is destroyed.
    if (!gone) this.client.off("error", this.onError);
    this.client.release(gone);
  }
}

/** PostgreSQL over the network, through a node-postgres pool: every capability. */
export class PgDatabase implements Database {
  private readonly pool: pg.Pool;
  private listener: pg.Client | undefined;
  private closed = false;

  readonly notifications: Notifications = {
    listen: (channel, onNotify, onReconnect) => this.listen(channel, onNotify, onReconnect),
    query: <R>(text: string, values?: unknown[]) => this.queryListener<R>(text, values),
  };
  readonly bulkCopy: BulkCopy = { session: () => this.session() };

  constructor(private readonly options: PgDatabaseOptions) {
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.max ?? DEFAULT_DATABASE_POOL_SIZE,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
      application_name: options.applicationName ?? "assignment-server",
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on("error", (err) => options.log?.(`idle database connection lost: ${err.message}`));
  }

  async query<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    try {
      return resultOf<R>(await this.pool.query(text, values));
    } catch (err) {
      return rethrowStoreError(err);
    }
  }

  async session(): Promise<PgSession> {
    try {
      return new PgSession(await this.pool.connect());
    } catch (err) {
      return rethrowStoreError(err);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const session = await this.session();
    try {
      return await session.transaction(fn);
    } finally {
      session.release();
    }
  }

  private async listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void> {
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

  /** A statement on the listening connection (see Notifications.query). */
  private async queryListener<R>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    const l = this.listener;
    if (!l) throw unavailable("the listening connection is down (reconnecting)");
    try {
      return resultOf<R>(await l.query(text, values));
    } catch (err) {
      return rethrowStoreError(err);
    }
  }

  async migrate(options?: MigrateOptions): Promise<void> {
    const client = await this.pool.connect();
    try {
      await runMigrations(client, options);
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
