import { Metadata, status, type ServiceError as GrpcServiceError } from "@grpc/grpc-js";
import { ServiceError } from "../errors.js";

/**
 * The one place where errors become gRPC statuses. A ServiceError carries its code; a
 * PostgreSQL data exception (SQLSTATE class 22, e.g. a byte sequence the database refuses) is the
 * caller's input, so INVALID_ARGUMENT; anything else is a bug: INTERNAL, with the detail logged,
 * not sent.
 */
export function toGrpcStatus(err: unknown, log: (msg: string, err: unknown) => void): Partial<GrpcServiceError> {
  if (err instanceof ServiceError) return { code: err.code, details: err.message, metadata: new Metadata() };
  const sqlState = (err as { code?: unknown })?.code;
  if (typeof sqlState === "string" && sqlState.startsWith("22")) {
    return { code: status.INVALID_ARGUMENT, details: `invalid input: ${(err as Error).message}`, metadata: new Metadata() };
  }
  log("internal error", err);
  return { code: status.INTERNAL, details: "internal error", metadata: new Metadata() };
}
