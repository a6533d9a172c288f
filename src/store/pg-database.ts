import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { AdvisoryLocks, BulkCopy, CopyIn, CopySession, Database, Notifications, Queryable, QueryResult } from "./database.js";
import { DEFAULT_DATABASE_POOL_SIZE } from "../server-defaults.js";
import { type MigrateOptions, runMigrations } from "./migrations.js";
import { unavailable } from "../errors.js";
import { isConnectionError, rethrowStoreError } from "./pg-errors.js";

export interface PgDatabaseOptions {
  url: string;
  /** A connection straight to PostgreSQL, for what needs a session of its own across statements:
   * LISTEN (notifications are delivered to the session that listens), migrations and advisory
   * locks (session-level). Default `url`. When `url` goes through a pooler in transaction
   * mode (PgBouncer), this must not: such a pooler hands every transaction whichever server
   * connection is free. */
  directUrl?: string;
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

  copyIn(sql: string): CopyIn {
    const stream = this.client.query(copyFrom(sql));
    let error: unknown;
    let ended = false;
    // Writes waiting for the connection: a refusal before the COPY started would leave them
    // waiting for ever, so it lets them go.
    const waiting = new Set<() => void>();
    const done = new Promise<void>((resolve, reject) => {
      stream.once("finish", resolve);
      stream.on("error", (err) => {
        error ??= err;
        for (const w of waiting) w();
        waiting.clear();
        reject(err);
      });
    });
    done.catch(() => {}); // reported by end()
    return {
      // One chunk at a time, each written once the last was taken: pg-copy-streams forgets its
      // connection when the database refuses the COPY, and a second chunk it still held would
      // then be written to no connection at all. After a refusal nothing more is written (the
      // database would drop it anyway).
      write: (chunk) =>
        error !== undefined || ended
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              const go = () => {
                waiting.delete(go);
                resolve();
              };
              waiting.add(go);
              stream.write(chunk, go);
            }),
      get failed() {
        return error !== undefined;
      },
      end: async () => {
        if (!ended && error === undefined) stream.end();
        ended = true;
        try {
          await done;
        } catch (err) {
          if (isConnectionError(err)) this.broken = true;
          return rethrowStoreError(err);
        }
      },
    };
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
  /** The channels listened on, and what each calls (see listen). */
  private readonly channels = new Map<string, { onNotify: (payload: string) => void; onReconnect: () => void }>();
  /** The first connection of the listener, made at the first listen. */
  private connecting: Promise<void> | undefined;
  /** Connections holding advisory locks (AdvisoryLocks), to `directUrl`; made at the first lock. */
  private lockPool: pg.Pool | undefined;
  private closed = false;

  readonly notifications: Notifications = {
    listen: (channel, onNotify, onReconnect) => this.listen(channel, onNotify, onReconnect),
    query: <R>(text: string, values?: unknown[]) => this.queryListener<R>(text, values),
  };
  readonly bulkCopy: BulkCopy = { session: () => this.session() };
  readonly advisoryLocks: AdvisoryLocks = { tryLock: (key) => this.tryLock(key) };

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

  /**
   * One listening connection for every channel (the configuration's, the jobs'): each channel is
   * LISTENed on it, again after a reconnect, and every channel's `onReconnect` is called then.
   */
  private async listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void> {
    if (this.channels.has(channel)) throw new Error(`already listening on ${channel}`);
    this.channels.set(channel, { onNotify, onReconnect });
    const connect = async (): Promise<void> => {
      const client = new pg.Client({ connectionString: this.directUrl, application_name: "assignment-server-listen" });
      client.on("notification", (n) => this.channels.get(n.channel)?.onNotify(n.payload ?? ""));
      const retry = () => {
        if (this.closed) return;
        client.removeAllListeners("error");
        client.on("error", () => {});
        client.end().catch(() => {});
        this.listener = undefined;
        setTimeout(() => {
          connect().then(
            () => {
              for (const c of this.channels.values()) c.onReconnect();
            },
            () => retry(),
          );
        }, 500).unref();
      };
      client.on("error", (err) => {
        this.options.log?.(`listening connection lost: ${err.message}`);
        retry();
      });
      client.on("end", () => {
        if (!this.closed && this.listener === client) retry();
      });
      await client.connect();
      for (const name of this.channels.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(name)}`);
      this.listener = client;
    };
    if (!this.connecting) {
      this.connecting = connect();
      this.connecting.catch(() => (this.connecting = undefined));
    }
    try {
      await this.connecting;
    } catch (err) {
      this.channels.delete(channel);
      throw err;
    }
    // Connected before this channel was added: LISTEN on it now (a reconnect LISTENs on every
    // channel anyway, so a connection lost meanwhile misses nothing).
    const client = this.listener;
    try {
      await client?.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      if (this.listener === client) throw err;
    }
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

  /**
   * A session-level advisory lock on a connection of its own to `directUrl`, held until `release`
   * unlocks it (or the connection is lost: a killed process holds nothing). Not through a pooler in
   * transaction mode: there the unlock could reach another server connection than the lock, and a
   * second lock statement the one already holding it (they are re-entrant); and a transaction held
   * open instead would pin one of the pooler's few server connections per lock, which the work
   * under the lock may then wait for.
   */
  private async tryLock(key: string): Promise<{ release(): Promise<void> } | undefined> {
    if (!this.lockPool) {
      this.lockPool = new pg.Pool({
        connectionString: this.directUrl,
        max: 64,
        connectionTimeoutMillis: this.options.connectionTimeoutMs ?? 5_000,
        idleTimeoutMillis: 30_000,
        application_name: "assignment-server-locks",
      });
      this.lockPool.on("error", (err) => this.options.log?.(`idle lock connection lost: ${err.message}`));
    }
    let client: pg.PoolClient;
    try {
      client = await this.lockPool.connect();
    } catch (err) {
      return rethrowStoreError(err);
    }
    let locked = false;
    try {
      const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [key]);
      locked = r.rows[0]?.ok === true;
    } catch (err) {
      client.release(true);
      return rethrowStoreError(err);
    }
    if (!locked) {
      client.release();
      return undefined;
    }
    return {
      release: async () => {
        let clean = false;
        try {
          await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]);
          clean = true;
        } finally {
          client.release(!clean);
        }
      },
    };
  }

  private get directUrl(): string {
    return this.options.directUrl ?? this.options.url;
  }

  /** On a connection of its own to `directUrl`: node-pg-migrate holds a session-level advisory lock
   * from before its transaction until after it, which a transaction pooler would split across
   * server connections (the unlock landing on another one, the lock kept forever). */
  async migrate(options?: MigrateOptions): Promise<void> {
    const client = new pg.Client({
      connectionString: this.directUrl,
      connectionTimeoutMillis: this.options.connectionTimeoutMs ?? 5_000,
      application_name: "assignment-server-migrate",
    });
    client.on("error", () => {}); // reported by the query that fails
    try {
      await client.connect();
      await runMigrations(client, options);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.lockPool?.end();
    await this.pool.end();
  }
}
