/**
 * What the stores need from a SQL database: all they know of one. Two drivers implement it, over
 * the same SQL and migrations: PostgreSQL over the network (pg-database.ts) and the embedded
 * PGlite (pglite-database.ts).
 *
 * What only some databases can do is a capability: a required member whose type includes `null`.
 * Every driver states each one (a new driver does not compile until it does), and a caller must
 * handle its absence in the open, by taking another path, instead of testing for a concrete class.
 */
import type { MigrateOptions } from "./migrations.js";

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

export interface Transactional {
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/**
 * One database session held until released: its statements run in order, and what it creates
 * for the session (temporary tables) is there for its later statements and transactions. On a
 * pool it is a connection of the caller's own. A single-connection database (PGlite) has one
 * session, shared with every other caller: there only `transaction` may hold a transaction open.
 */
export interface Session extends Queryable, Transactional {
  /** Gives the session back; `broken`: its state is unknown (say, a COPY left unfinished), so it
   * must not be reused. A driver also knows by itself when it broke one. */
  release(broken?: boolean): void;
}

/** LISTEN/NOTIFY. `query` runs a statement on the connection that receives the notifications (it
 * fails while that connection is down): an answer proves that notifications can arrive. */
export interface Notifications extends Queryable {
  /** Calls `onNotify` for every NOTIFY on `channel`, and `onReconnect` after a lost listening
   * connection was re-established (notifications may have been missed meanwhile). */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void>;
}

/** COPY streams, on a connection of the caller's own. */
export interface BulkCopy {
  /** A connection that can COPY. A transaction begun on it with BEGIN lasts across calls until
   * COMMIT or ROLLBACK (an import holds one open while its upload lasts). */
  session(): Promise<CopySession>;
}

export interface CopySession extends Session {
  /** `COPY … FROM STDIN`: sends `chunks` (COPY text) and resolves when the database took them. */
  copyFrom(sql: string, chunks: Iterable<Buffer>): Promise<void>;
  /** `COPY … FROM STDIN` fed as the caller goes, so the database stores rows while the next ones
   * are still being made. Nothing else may run on the session until `end` settled. */
  copyIn(sql: string): CopyIn;
  /** `COPY … TO STDOUT`: the COPY text as it arrives, read only as fast as it is taken. A consumer
   * that stops early leaves the COPY unfinished, and the session broken. */
  copyTo(sql: string): AsyncIterable<Buffer>;
}

/** An open `COPY … FROM STDIN` (CopySession.copyIn). */
export interface CopyIn {
  /** Sends COPY text; resolves once the connection took it (the caller's backpressure). After the
   * database refused the COPY it sends nothing and resolves at once: `end` reports why. */
  write(chunk: Buffer): Promise<void>;
  /** Whether the database already refused the COPY (its error comes from `end`). */
  readonly failed: boolean;
  /** Ends the COPY; resolves once the database stored every row, rejects with its error. */
  end(): Promise<void>;
}

/** Locks between processes, by key. */
export interface AdvisoryLocks {
  /** Takes the lock of `key` unless someone holds it (then undefined). Held until `release`, or
   * until this process's connection is lost (a killed process holds nothing). */
  tryLock(key: string): Promise<{ release(): Promise<void> } | undefined>;
}

export interface Database extends Queryable, Transactional {
  /** A session (see Session). */
  session(): Promise<Session>;
  /** Applies the versioned migrations of migrations/. Safe to run from many processes at once. */
  migrate(options?: MigrateOptions): Promise<void>;
  close(): Promise<void>;

  /** LISTEN/NOTIFY. null: changes made by other servers are noticed by the periodic check alone. */
  readonly notifications: Notifications | null;
  /** COPY FROM STDIN and COPY TO STDOUT. null: imports stage rows with INSERT … SELECT FROM unnest
   * and exports page with SELECT, several times slower. */
  readonly bulkCopy: BulkCopy | null;
  /** Locks between processes. null: one process owns the database (locks in memory suffice). */
  readonly advisoryLocks: AdvisoryLocks | null;
}
