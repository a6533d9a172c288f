import { status } from "@grpc/grpc-js";

/**
 * The one error type of the server: a message and the gRPC status code it maps to.
 * Everything a handler throws that is not a ServiceError is reported as INTERNAL (and logged),
 * so every expected refusal must be one of these. The mapping to the wire lives in src/grpc.
 */
export class ServiceError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = "ServiceError";
  }
}

/** INVALID_ARGUMENT naming the field and the rule it breaks, e.g. `variants[2].weight: must be 0..10000`. */
export function invalidArgument(field: string, rule: string): ServiceError {
  return new ServiceError(status.INVALID_ARGUMENT, `${field}: ${rule}`);
}

export function notFound(what: string): ServiceError {
  return new ServiceError(status.NOT_FOUND, what);
}

export function alreadyExists(what: string): ServiceError {
  return new ServiceError(status.ALREADY_EXISTS, what);
}

export function failedPrecondition(what: string): ServiceError {
  return new ServiceError(status.FAILED_PRECONDITION, what);
}

export function aborted(what: string): ServiceError {
  return new ServiceError(status.ABORTED, what);
}

export function resourceExhausted(what: string): ServiceError {
  return new ServiceError(status.RESOURCE_EXHAUSTED, what);
}

export function cancelled(what: string): ServiceError {
  return new ServiceError(status.CANCELLED, what);
}

export function unavailable(what: string): ServiceError {
  return new ServiceError(status.UNAVAILABLE, what);
}
