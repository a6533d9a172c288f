/**
 * The little the stores need from a SQL database. One implementation talks to PostgreSQL over
 * the network (pg-database.ts); the SQL the stores send is plain PostgreSQL.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

export interface Database extends Queryable {
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Calls `onNotify` for every NOTIFY on `channel`, and `onReconnect` after a lost listening
   * connection was re-established (notifications may have been missed meanwhile). */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void>;
  /** Applies the versioned migrations of migrations/. Safe to run from many processes at once. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
