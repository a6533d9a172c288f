import { Code, ServiceError, unavailable } from "../errors.js";

/**
 * Everything the server knows about PostgreSQL's error codes (SQLSTATE), in one place, for both
 * drivers: node-postgres and PGlite errors carry the SQLSTATE as `code`. Drivers pass every failure
 * through `toStoreError`, so what leaves a store is a ServiceError (or, for a failure nobody
 * expected, the database's own error, which the transport reports as INTERNAL).
 */

const UNIQUE_VIOLATION = "23505";

/** The SQLSTATE of a database error, or undefined for anything else (a Node socket error's `code`
 * such as ECONNRESET is not one). */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** A unique key refused the row (23505). */
export function isUniqueViolation(err: unknown): boolean {
  return sqlState(err) === UNIQUE_VIOLATION;
}

/** A row stored straight into a partition of a partitioned table does not belong there (23514,
 * "violates partition constraint"). */
export function isPartitionConstraintViolation(err: unknown): boolean {
  return sqlState(err) === "23514" && /partition constraint/.test((err as Error).message);
}

/** The database broke a deadlock by aborting this transaction (40P01): it may simply be run again. */
export function isDeadlock(err: unknown): boolean {
  return sqlState(err) === "40P01";
}

/** A data exception (class 22: a value the database refuses, e.g. a byte sequence it cannot hold):
 * the caller's input. */
export function isDataException(err: unknown): boolean {
  return sqlState(err)?.startsWith("22") === true;
}

const SOCKET_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"]);
// 55000 "database … is not currently accepting connections" (ALLOW_CONNECTIONS false) is a refused
// connection too; matched by message, since 55000 alone also covers unrelated state errors.
// "PGlite is closed": the embedded database was closed (the server is shutting down).
const UNREACHABLE_MESSAGE =
  /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect|is not currently accepting connections|PGlite is closed/i;

/** SQLSTATE classes and Node socket errors that mean "the database cannot be reached now":
 * connection exception (08), operator intervention (57P: shutdown, restart), insufficient
 * resources (53). */
export function isConnectionError(err: unknown): boolean {
  const state = sqlState(err);
  if (state && /^(08|57P|53)/.test(state)) return true;
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  if (typeof e?.code === "string" && SOCKET_ERRORS.has(e.code)) return true;
  return typeof e?.message === "string" && UNREACHABLE_MESSAGE.test(e.message);
}

/** What a database failure means to the caller: UNAVAILABLE when the database cannot be reached,
 * INVALID_ARGUMENT for a value it refuses; a ServiceError and anything else unchanged. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof ServiceError) return err;
  if (isConnectionError(err)) return unavailable(`database unavailable: ${(err as Error).message}`);
  if (isDataException(err)) return new ServiceError(Code.InvalidArgument, `invalid input: ${(err as Error).message}`);
  return err;
}

/** Throws `toStoreError(err)`. */
export function rethrowStoreError(err: unknown): never {
  throw toStoreError(err);
}
