/**
 * The one error type of the server, independent of any transport: a message and a Code. Every
 * layer throws it (the engine's validators, the stores, the services); each transport maps it to
 * its wire once (gRPC: src/grpc/status-mapping.ts). Anything a handler throws that is not a
 * ServiceError is reported as INTERNAL (and logged), so every expected refusal must be one of these.
 *
 * This module imports nothing: the pure engine depends on it.
 */

/**
 * Status codes, numerically the canonical gRPC codes, which grpc-js's `status` and Connect's `Code`
 * also are: a transport maps them by identity, and a member of either library's enum with one of
 * these values is assignable to Code. Named as Connect names them. (OK is not an error.)
 */
export const Code = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

export class ServiceError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
    this.name = "ServiceError";
  }
}

/** Whether `err` is a ServiceError with `code`. */
export function hasCode(err: unknown, code: Code): err is ServiceError {
  return err instanceof ServiceError && err.code === code;
}

/** INVALID_ARGUMENT naming the field and the rule it breaks, e.g. `variants[2].weight: must be 0..10000`. */
export function invalidArgument(field: string, rule: string): ServiceError {
  return new ServiceError(Code.InvalidArgument, `${field}: ${rule}`);
}

export function notFound(what: string): ServiceError {
  return new ServiceError(Code.NotFound, what);
}

export function alreadyExists(what: string): ServiceError {
  return new ServiceError(Code.AlreadyExists, what);
}

export function failedPrecondition(what: string): ServiceError {
  return new ServiceError(Code.FailedPrecondition, what);
}

export function aborted(what: string): ServiceError {
  return new ServiceError(Code.Aborted, what);
}

export function resourceExhausted(what: string): ServiceError {
  return new ServiceError(Code.ResourceExhausted, what);
}

export function cancelled(what: string): ServiceError {
  return new ServiceError(Code.Canceled, what);
}

export function deadlineExceeded(what: string): ServiceError {
  return new ServiceError(Code.DeadlineExceeded, what);
}

export function unavailable(what: string): ServiceError {
  return new ServiceError(Code.Unavailable, what);
}

export function permissionDenied(what: string): ServiceError {
  return new ServiceError(Code.PermissionDenied, what);
}

export function unauthenticated(what: string): ServiceError {
  return new ServiceError(Code.Unauthenticated, what);
}
