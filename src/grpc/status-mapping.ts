import { Metadata, status, type ServiceError as GrpcServiceError } from "@grpc/grpc-js";
import { type Code, ServiceError } from "../errors.js";

/** The gRPC status of a Code: the same number (see Code). */
export function grpcStatusOf(code: Code): status {
  return code as number as status;
}

/**
 * The one place where errors become gRPC statuses. A ServiceError carries its code (the stores
 * turn database failures into ServiceErrors: src/store/pg-errors.ts); anything else is a bug:
 * INTERNAL, with the detail logged, not sent.
 */
export function toGrpcStatus(err: unknown, log: (msg: string, err: unknown) => void): Partial<GrpcServiceError> {
  if (err instanceof ServiceError) return { code: grpcStatusOf(err.code), details: clipDetails(err.message), metadata: new Metadata() };
  log("internal error", err);
  return { code: status.INTERNAL, details: "internal error", metadata: new Metadata() };
}

/** Details travel in the grpc-message trailer: one over HTTP/2's header limit (64 KB, e.g. a
 * refusal quoting a 100 KB map key) is never delivered, and the call hangs until its deadline with
 * the connection wedged. Messages quote caller input, so they are cut to a bounded length. */
export const MAX_DETAILS_CHARS = 1_000;

function clipDetails(message: string): string {
  return message.length <= MAX_DETAILS_CHARS
    ? message
    : `${message.slice(0, MAX_DETAILS_CHARS)}… (${message.length - MAX_DETAILS_CHARS} more characters)`;
}
