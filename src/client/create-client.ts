import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { methodPath } from "../grpc/service-definition.js";
import { MAX_MESSAGE_BYTES } from "../protocol-limits.js";

export interface CallOptions {
  /** Milliseconds until the call's deadline; overrides the client's default. */
  timeoutMs?: number;
  /** Extra metadata for this call. */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
  /** Overrides the client's retry settings for this call (`false`: no retries). Only idempotent
   * methods are ever retried. */
  retry?: RetryOptions | false;
}

/**
 * Retries of calls that failed with UNAVAILABLE, for idempotent methods only: those whose proto
 * declares `option idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT` (reads, and the sticky
 * assignment calls), and that do not stream requests. A server-streaming call is retried only
 * while it has not delivered a message yet. Retries never outlive the call's deadline: one that
 * could not start before it is not made, and the last UNAVAILABLE is reported.
 */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 turns retrying off. Default 4. */
  maxAttempts?: number;
  /** Backoff before the first retry; doubled for each further one. Default 50 ms. */
  initialBackoffMs?: number;
  /** Upper bound of the backoff. Default 2000 ms. */
  maxBackoffMs?: number;
  /** Called before each retry (logging, metrics). */
  onRetry?: (event: RetryEvent) => void;
}

export interface RetryEvent {
  /** `/assignment.v1.AssignmentService/Assign` */
  method: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  /** How long the client waits before the next attempt. */
  delayMs: number;
  error: grpc.ServiceError;
}

export const DEFAULT_RETRY = { maxAttempts: 4, initialBackoffMs: 50, maxBackoffMs: 2_000 } as const;

export interface ClientOptions {
  /** Default deadline of every call in milliseconds; none when 0 or absent. */
  timeoutMs?: number;
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  credentials?: grpc.ChannelCredentials;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Retries of idempotent calls on UNAVAILABLE (see RetryOptions); on by default, `false` turns
   * them off. */
  retry?: RetryOptions | false;
}

type ClientMethod<M> = M extends { methodKind: "unary"; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? (request: MessageInitShape<I>, options?: CallOptions) => Promise<MessageShape<O>>
  : M extends { methodKind: "server_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (request: MessageInitShape<I>, options?: CallOptions) => AsyncIterable<MessageShape<O>>
    : M extends { methodKind: "client_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
      ? (requests: AsyncIterable<MessageInitShape<I>>, options?: CallOptions) => Promise<MessageShape<O>>
      : M extends { methodKind: "bidi_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
        ? (requests: AsyncIterable<MessageInitShape<I>>, options?: CallOptions) => AsyncIterable<MessageShape<O>>
        : never;

/** A typed client of a service, derived from its generated descriptor. */
export type Client<S extends DescService> = {
  [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
} & { close(): void; readonly channel: grpc.Client };

/**
 * Whether the client may retry `method`: its proto declares it free of side effects or
 * idempotent, and it does not stream requests (a request stream cannot be replayed).
 */
export function isRetryable(method: DescMethod): boolean {
  return (
    (method.methodKind === "unary" || method.methodKind === "server_streaming") &&
    (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
      method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT)
  );
}

/** Creates a typed client for `service` at `address` (host:port). */
export function createClient<S extends DescService>(service: S, address: string, options: ClientOptions = {}): Client<S> {
  if (options.token !== undefined && !/^[\x21-\x7e]+$/.test(options.token)) {
    // Sent as it is, a token with whitespace around it would not even reach the server: HTTP/2
    // drops a header value that begins or ends with whitespace.
    throw new TypeError("token: must be printable ASCII without whitespace (check for a space or a newline around it)");
  }
  const channel = new grpc.Client(address, options.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    // After a failed connection grpc-js waits 1 s (growing) before reconnecting, failing calls at
    // once meanwhile; reconnecting at the pace of the first retries lets them ride out a restart.
    ...(options.retry === false
      ? {}
      : { "grpc.initial_reconnect_backoff_ms": options.retry?.initialBackoffMs ?? DEFAULT_RETRY.initialBackoffMs }),
    ...options.channelOptions,
  });
  const client: Record<string, unknown> = { channel, close: () => channel.close() };

  const metadataFor = (o: CallOptions | undefined) => {
    const md = new grpc.Metadata();
    if (options.token) md.set("authorization", `Bearer ${options.token}`);
    for (const [k, v] of Object.entries(o?.metadata ?? {})) md.set(k, v);
    return md;
  };
  /** The call's absolute deadline, shared by all its attempts. */
  const deadlineFor = (o: CallOptions | undefined) => {
    const timeout = o?.timeoutMs ?? options.timeoutMs;
    return timeout ? Date.now() + timeout : undefined;
  };
  const callArgs = (o: CallOptions | undefined, deadline = deadlineFor(o)) => {
    const callOptions: grpc.CallOptions = deadline !== undefined ? { deadline } : {};
    return { md: metadataFor(o), callOptions };
  };
  /** Cancels `call` when `signal` aborts; returns the function that stops listening. */
  const onAbort = (signal: AbortSignal | undefined, call: { cancel(): void }) => {
    if (!signal) return () => {};
    if (signal.aborted) {
      call.cancel();
      return () => {};
    }
    const cancel = () => call.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    return () => signal.removeEventListener("abort", cancel);
  };
  const retryFor = (m: DescMethod, o: CallOptions | undefined): RetrySettings | undefined => {
    if (!isRetryable(m) || options.retry === false || o?.retry === false) return undefined;
    const perCall = o?.retry || undefined;
    const perClient = options.retry || undefined;
    const pick = <K extends keyof RetryOptions>(k: K): RetryOptions[K] => perCall?.[k] ?? perClient?.[k];
    const r: RetrySettings = {
      maxAttempts: pick("maxAttempts") ?? DEFAULT_RETRY.maxAttempts,
      initialBackoffMs: pick("initialBackoffMs") ?? DEFAULT_RETRY.initialBackoffMs,
      maxBackoffMs: pick("maxBackoffMs") ?? DEFAULT_RETRY.maxBackoffMs,
      onRetry: pick("onRetry"),
    };
    return r.maxAttempts > 1 ? r : undefined;
  };

  for (const m of service.methods) {
    const path = methodPath(m);
    const serialize = (msg: object) => Buffer.from(toBinary(m.input, create(m.input, msg as never)));
    const deserialize = (b: Buffer) => fromBinary(m.output, b);
    switch (m.methodKind) {
      case "unary":
        client[m.localName] = (request: object, o?: CallOptions) => {
          const deadline = deadlineFor(o);
          const attempt = () =>
            new Promise((resolve, reject) => {
              const { md, callOptions } = callArgs(o, deadline);
              let stopListening = () => {};
              const call = channel.makeUnaryRequest(path, serialize, deserialize, request, md, callOptions, (err, res) => {
                stopListening();
                if (err) reject(err);
                else resolve(res);
              });
              stopListening = onAbort(o?.signal, call);
            });
          const retry = retryFor(m, o);
          return retry ? withRetries(attempt, retry, path, deadline, o?.signal) : attempt();
        };
        break;
      case "server_streaming":
        client[m.localName] = (request: object, o?: CallOptions) => {
          const deadline = deadlineFor(o);
          const start = () => {
            const { md, callOptions } = callArgs(o, deadline);
            const call = channel.makeServerStreamRequest(path, serialize, deserialize, request, md, callOptions);
            call.on("status", onAbort(o?.signal, call));
            return call;
          };
          const retry = retryFor(m, o);
          return retry ? streamWithRetries(start, retry, path, deadline, o?.signal) : (start() as AsyncIterable<unknown>);
        };
        break;
      case "client_streaming":
        client[m.localName] = (requests: AsyncIterable<object>, o?: CallOptions) =>
          new Promise((resolve, reject) => {
            const { md, callOptions } = callArgs(o);
            const call = channel.makeClientStreamRequest(path, serialize, deserialize, md, callOptions, (err, res) =>
              err ? reject(err) : resolve(res),
            );
            onAbort(o?.signal, call);
            pump(requests, call).catch((err) => {
              call.cancel();
              reject(err);
            });
          });
        break;
      case "bidi_streaming":
        client[m.localName] = (requests: AsyncIterable<object>, o?: CallOptions) => {
          const { md, callOptions } = callArgs(o);
          const call = channel.makeBidiStreamRequest(path, serialize, deserialize, md, callOptions);
          onAbort(o?.signal, call);
          pump(requests, call).catch((err) => call.destroy(err));
          return call as AsyncIterable<unknown>;
        };
        break;
    }
  }
  return client as Client<S>;
}

type RetrySettings = Required<Omit<RetryOptions, "onRetry">> & Pick<RetryOptions, "onRetry">;

const isUnavailable = (err: unknown): err is grpc.ServiceError => (err as { code?: unknown })?.code === grpc.status.UNAVAILABLE;

/** Exponential backoff with jitter: the n-th retry waits between half and all of
 * min(initial * 2^(n-1), max). */
export function backoffMs(retry: Pick<RetrySettings, "initialBackoffMs" | "maxBackoffMs">, failedAttempt: number): number {
  const ceiling = Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** (failedAttempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Waits before retry number `attempt` (the one that failed); false when the retry must not be
 * made: attempts used up, not before the deadline, or the caller cancelled. */
async function waitToRetry(
  err: unknown,
  attempt: number,
  retry: RetrySettings,
  method: string,
  deadline: number | undefined,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  if (!isUnavailable(err) || attempt >= retry.maxAttempts || signal?.aborted) return false;
  const delayMs = backoffMs(retry, attempt);
  if (deadline !== undefined && Date.now() + delayMs >= deadline) return false;
  retry.onRetry?.({ method, attempt, delayMs, error: err });
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", cancelled);
      resolve(ok);
    };
    const cancelled = () => done(false);
    const timer = setTimeout(() => done(true), delayMs);
    signal?.addEventListener("abort", cancelled, { once: true });
  });
}

function cancelledError(): grpc.ServiceError {
  return Object.assign(new Error(`${grpc.status.CANCELLED} CANCELLED: Cancelled on client`), {
    code: grpc.status.CANCELLED,
    details: "Cancelled on client",
    metadata: new grpc.Metadata(),
  });
}

async function withRetries<T>(
  attempt: () => Promise<T>,
  retry: RetrySettings,
  method: string,
  deadline: number | undefined,
  signal: AbortSignal | undefined,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(await waitToRetry(err, n, retry, method, deadline, signal))) {
        throw signal?.aborted && isUnavailable(err) ? cancelledError() : err;
      }
    }
  }
}

/** A server stream, restarted on UNAVAILABLE as long as it has not delivered a message. */
async function* streamWithRetries(
  start: () => grpc.ClientReadableStream<unknown>,
  retry: RetrySettings,
  method: string,
  deadline: number | undefined,
  signal: AbortSignal | undefined,
): AsyncGenerator<unknown> {
  for (let n = 1; ; n++) {
    const call = start();
    let delivered = false;
    let finished = false;
    call.on("status", () => (finished = true));
    try {
      for await (const msg of call) {
        delivered = true;
        yield msg;
      }
      return;
    } catch (err) {
      if (delivered || !(await waitToRetry(err, n, retry, method, deadline, signal))) {
        throw signal?.aborted && isUnavailable(err) ? cancelledError() : err;
      }
    } finally {
      // The caller stopped reading early: end the call rather than leave it running.
      if (!finished) call.cancel();
    }
  }
}

/** Writes every request, waiting for drain when the stream's buffer is full, then half-closes. */
async function pump(requests: AsyncIterable<object>, call: grpc.ClientWritableStream<object>): Promise<void> {
  for await (const r of requests) {
    if (!call.write(r)) await new Promise<void>((res) => call.once("drain", res));
  }
  call.end();
}
