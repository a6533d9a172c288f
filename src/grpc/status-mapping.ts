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
  const { code, details } = wireStatus(err, log);
  return { code, details, metadata: new Metadata() };
}

/**
 * The status code and message of an error on any wire: gRPC's status, or the Connect protocol's
 * error (whose codes are gRPC's, by number; src/connect turns this into a ConnectError, which
 * Connect sends as the HTTP status and JSON body its specification gives each code).
 */
export function wireStatus(err: unknown, log: (msg: string, err: unknown) => void): { code: status; details: string } {
  if (err instanceof ServiceError) return { code: grpcStatusOf(err.code), details: clipDetails(err.message) };
  log("internal error", err);
  return { code: status.INTERNAL, details: "internal error" };
}

/** Details travel in the grpc-message trailer: one over HTTP/2's header limit (64 KB, e.g. a
 * refusal quoting a 100 KB map key) is never delivered, and the call hangs until its deadline with
 * the connection wedged. Messages quote caller input, so they are cut to a bounded length. */
export const MAX_DETAILS_CHARS = 1_000;

/** A UTF-16 surrogate without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Also well-formed: grpc-js percent-encodes the message with encodeURIComponent, which throws on
 * a lone surrogate (a caller's string quoted in a refusal, or a cut through a pair), and the call
 * then never got its status. Each becomes U+FFFD. */
function clipDetails(message: string): string {
  const clipped =
    message.length <= MAX_DETAILS_CHARS
      ? message
      : `${message.slice(0, MAX_DETAILS_CHARS)}… (${message.length - MAX_DETAILS_CHARS} more characters)`;
  return clipped.replace(LONE_SURROGATE, "\uFFFD");
}
