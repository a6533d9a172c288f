import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import type { ServerMetrics } from "./metrics.js";

export const REQUEST_ID_HEADER = "x-request-id";
/** A caller's request id is kept when it is this short and plain; otherwise one is made. */
const USABLE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * A grpc-js server interceptor that sees every call of every service (health and reflection
 * included) from its metadata to its status:
 *
 * - gives it a request id: the caller's `x-request-id`, or a new UUID, put into the metadata the
 *   handler sees and sent back in the response headers (or trailers, when it fails at once);
 * - when it ends, logs method, status and duration with that id (debug level; info for a call
 *   that did not end OK), and records it in the metrics.
 */
export function observeCalls(log: Logger, metrics: ServerMetrics | undefined): grpc.ServerInterceptor {
  const debug = log.isLevelEnabled("debug");
  return (definition, call) => {
    const path = definition.path; // "/assignment.v1.AssignmentService/Assign"
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash);
    const method = path.slice(slash + 1);
    const started = performance.now();
    let requestId = "";
    let metadataSent = false;
    let finished = false;

    const finish = (code: grpc.status, details: string | undefined) => {
      if (finished) return;
      finished = true;
      const ms = performance.now() - started;
      const codeName = grpc.status[code] ?? String(code);
      metrics?.call(service, method, codeName, ms / 1000);
      if (code !== grpc.status.OK) {
        log.info(
          { requestId, service, method, code: codeName, details, durationMs: Math.round(ms * 1000) / 1000, peer: call.getPeer() },
          "call failed",
        );
      } else if (debug) {
        log.debug({ requestId, service, method, code: codeName, durationMs: Math.round(ms * 1000) / 1000 }, "call");
      }
    };

    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const given = metadata.get(REQUEST_ID_HEADER)[0];
            requestId = typeof given === "string" && USABLE_REQUEST_ID.test(given) ? given : randomUUID();
            metadata.set(REQUEST_ID_HEADER, requestId);
            nextMetadata(metadata);
          },
          onCancel() {
            const deadline = call.getDeadline();
            const expired = deadline !== Infinity && Number(deadline) <= Date.now();
            finish(expired ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED, "cancelled before an answer");
          },
        });
      },
      sendMetadata(metadata, next) {
        metadataSent = true;
        if (requestId) metadata.set(REQUEST_ID_HEADER, requestId);
        next(metadata);
      },
      sendStatus(status, next) {
        if (!metadataSent && requestId) {
          const md = status.metadata ?? new grpc.Metadata();
          md.set(REQUEST_ID_HEADER, requestId);
          status = { ...status, metadata: md };
        }
        finish(status.code, status.details);
        next(status);
      },
    });
  };
}
