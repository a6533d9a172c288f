/**
 * Retries of the idempotent methods, as a gRPC service config derived from the descriptors (the
 * Python package, clients/python, derives the same one).
 *
 * The protos mark what is safe to repeat: `option idempotency_level = NO_SIDE_EFFECTS` on the
 * reads and `IDEMPOTENT` on the sticky assignment calls. grpc-js retries exactly those (its own
 * `retryPolicy`), on UNAVAILABLE, with exponential backoff and jitter, within each call's deadline;
 * never a method that streams requests (a request stream cannot be replayed), nor any other. A
 * server stream (ExportAssignments) is retried only until its first message arrives (gRPC commits
 * a call once the server answered anything).
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { ChannelOptions } from "@grpc/grpc-js";

/** How grpc-js retries the idempotent methods (a service config's `retryPolicy`). The n-th retry
 * waits a random time between 0 and min(initialBackoffMs * backoffMultiplier^(n-1), maxBackoffMs). */
export interface RetryOptions {
  /** Attempts in all, the first included: 2..5 (gRPC allows no more than 5). Default 4. */
  maxAttempts?: number;
  /** Upper bound of the first retry's random wait. Default 50 ms. */
  initialBackoffMs?: number;
  /** Upper bound of every wait. Default 2000 ms. */
  maxBackoffMs?: number;
  /** Default 2. */
  backoffMultiplier?: number;
  /** Status code names that are retried. Default `["UNAVAILABLE"]`. */
  retryableStatusCodes?: readonly string[];
}

/** The defaults: 4 attempts, waits of at most 50, 100, 200 ms (the Python package's too). */
export const DEFAULT_RETRY = {
  maxAttempts: 4,
  initialBackoffMs: 50,
  maxBackoffMs: 2_000,
  backoffMultiplier: 2,
  retryableStatusCodes: ["UNAVAILABLE"],
} as const satisfies Required<RetryOptions>;

const MAX_ATTEMPTS_CAP = 5;

/** Whether gRPC may repeat `method`: its proto declares it free of side effects or idempotent,
 * and it does not stream requests. */
export function isRetryable(method: DescMethod): boolean {
  return (
    (method.methodKind === "unary" || method.methodKind === "server_streaming") &&
    (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
      method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT)
  );
}

/** The policy with defaults filled in; throws RangeError naming a bad setting. */
export function retryPolicy(options: RetryOptions = {}): Required<RetryOptions> {
  const p = { ...DEFAULT_RETRY, ...options };
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < 2 || p.maxAttempts > MAX_ATTEMPTS_CAP) {
    throw new RangeError(`retry.maxAttempts: must be 2..${MAX_ATTEMPTS_CAP} (attempts in all), got ${p.maxAttempts}`);
  }
  if (!(p.initialBackoffMs > 0)) throw new RangeError(`retry.initialBackoffMs: must be more than 0, got ${p.initialBackoffMs}`);
  if (!(p.maxBackoffMs >= p.initialBackoffMs)) {
    throw new RangeError(`retry.maxBackoffMs: must be at least initialBackoffMs (${p.initialBackoffMs}), got ${p.maxBackoffMs}`);
  }
  if (!(p.backoffMultiplier >= 1)) throw new RangeError(`retry.backoffMultiplier: must be at least 1, got ${p.backoffMultiplier}`);
  if (p.retryableStatusCodes.length === 0) throw new RangeError("retry.retryableStatusCodes: must name at least one status code");
  return p;
}

/** Protobuf JSON Duration: decimal seconds with an "s". */
const duration = (ms: number) => `${(ms / 1000).toFixed(9).replace(/\.?0+$/, "")}s`;

/** A gRPC service config retrying the idempotent methods of `services` under `options` (a
 * channel's `grpc.service_config` option, JSON-encoded). */
export function retryServiceConfig(services: readonly DescService[], options: RetryOptions = {}): object {
  const p = retryPolicy(options);
  const name = services.flatMap((s) => s.methods.filter(isRetryable).map((m) => ({ service: s.typeName, method: m.name })));
  if (name.length === 0) return {};
  return {
    methodConfig: [
      {
        name,
        retryPolicy: {
          maxAttempts: p.maxAttempts,
          initialBackoff: duration(p.initialBackoffMs),
          maxBackoff: duration(p.maxBackoffMs),
          backoffMultiplier: p.backoffMultiplier,
          retryableStatusCodes: [...p.retryableStatusCodes],
        },
      },
    ],
  };
}

/** grpc-js channel options that retry the idempotent methods of `services` (`false`: retry
 * nothing). */
export function retryChannelOptions(services: readonly DescService[], options: RetryOptions | false | undefined): ChannelOptions {
  if (options === false) return { "grpc.enable_retries": 0 };
  return {
    "grpc.enable_retries": 1,
    "grpc.service_config": JSON.stringify(retryServiceConfig(services, options)),
    // After a failed connection grpc-js waits 1 s (growing) before connecting again and fails
    // calls at once meanwhile; reconnecting at the pace of the first retries lets them ride out a
    // server that is (re)starting.
    "grpc.initial_reconnect_backoff_ms": Math.max(1, Math.round(retryPolicy(options).initialBackoffMs)),
  };
}
