import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import type { ServerMetrics } from "./metrics.js";

export const REQUEST_ID_HEADER = "x-request-id";
/** A caller's request id is kept when it is this short and plain; otherwise one is made. */
const USABLE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** What is known of a call when it ends, on any transport. */
export interface FinishedCall {
  requestId: string;
  /** `assignment.v1.AssignmentService` */
  service: string;
  /** `Assign` */
  method: string;
  /** Status code name: `OK`, `UNAUTHENTICATED`, … */
  code: string;
  details?: string;
  ms: number;
  peer?: string;
  /** `grpc`, `connect`, `grpc-web` */
  protocol: string;
}

/**
 * Records a finished call, whatever its transport: the metrics, and one log line (debug level;
 * info for a call that did not end OK). The line names the call as `rpc`
 * (`assignment.v1.AssignmentService/Assign`) and `method` (`Assign`): the logger's own `service`
 * key names the server,
 * and a second `service` key would be lost by every JSON parser.
 */
export function callRecorder(log: Logger, metrics: ServerMetrics | undefined): (call: FinishedCall) => void {
  const debug = log.isLevelEnabled("debug");
  return (c) => {
    metrics?.call(c.service, c.method, c.code, c.ms / 1000);
    const durationMs = Math.round(c.ms * 1000) / 1000;
    const rpc = `${c.service}/${c.method}`;
    if (c.code !== "OK") {
      log.info(
        { requestId: c.requestId, rpc, method: c.method, protocol: c.protocol, code: c.code, details: c.details, durationMs, peer: c.peer },
        "call failed",
      );
    } else if (debug) {
      log.debug({ requestId: c.requestId, rpc, method: c.method, protocol: c.protocol, code: c.code, durationMs }, "call");
    }
  };
}

/** The caller's request id when it is usable, else a new one. */
export function requestIdOf(given: unknown): string {
  return typeof given === "string" && USABLE_REQUEST_ID.test(given) ? given : randomUUID();
}

/**
 * A grpc-js server interceptor that sees every call of every service (health and reflection
 * included) from its metadata to its status:
 *
 * - gives it a request id: the caller's `x-request-id`, or a new UUID, put into the metadata the
 *   handler sees and sent back in the response headers (or trailers, when it fails at once);
 * - when it ends, records it (callRecorder: log line and metrics).
 */
export function observeCalls(log: Logger, metrics: ServerMetrics | undefined): grpc.ServerInterceptor {
  const record = callRecorder(log, metrics);
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
      const codeName = grpc.status[code] ?? String(code);
      record({
        requestId,
        service,
        method,
        code: codeName,
        details,
        ms: performance.now() - started,
        peer: call.getPeer(),
        protocol: "grpc",
      });
    };

    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            requestId = requestIdOf(metadata.get(REQUEST_ID_HEADER)[0]);
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
