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
import * as grpc from "@grpc/grpc-js";
import { MAX_MESSAGE_BYTES } from "./limits.js";
import { type RetryOptions, retryChannelOptions } from "./retry.js";

/** `/assignment.v1.AssignmentService/Assign` */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

export interface CallOptions {
  /** Milliseconds until the call's deadline; overrides the client's default. */
  timeoutMs?: number;
  /** Extra metadata for this call. */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** Default deadline of every call in milliseconds; none when 0 or absent. */
  timeoutMs?: number;
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  credentials?: grpc.ChannelCredentials;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Retries of idempotent calls (see RetryOptions); on by default, `false` turns them off. */
  retry?: RetryOptions | false;
  /** How calls are spread over the addresses the target resolves to: `round_robin` (every call to
   * the next ready server; a server that goes away is skipped) or `pick_first` (one server at a
   * time, grpc's default). Default `round_robin` for a list of addresses, else grpc's default. */
  loadBalancing?: "round_robin" | "pick_first";
}

/**
 * The grpc target of `address`: a string as it is (`host:port`, `dns:///name:port`, ...); a list
 * of `ip:port` addresses as one `ipv4:` (or `ipv6:`) target naming them all, which grpc-js
 * resolves to every one of them.
 */
function targetOf(address: string | readonly string[]): string {
  if (typeof address === "string") return address;
  if (address.length === 0) throw new TypeError("address: an empty list (give at least one ip:port)");
  const ipv4 = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;
  const ipv6 = /^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/;
  if (address.every((a) => ipv4.test(a))) return `ipv4:${address.join(",")}`;
  if (address.every((a) => ipv6.test(a))) return `ipv6:${address.join(",")}`;
  throw new TypeError(
    `address: a list must be IPv4 (1.2.3.4:50051) or IPv6 ([::1]:50051) addresses, all of one kind (got ${JSON.stringify(address)}); ` +
      "for host names give one target such as 'dns:///servers.example:50051' whose name resolves to every server, with loadBalancing: 'round_robin'",
  );
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

/** Creates a typed client for `service` at `address`: `host:port` (or any grpc target), or a list
 * of `ip:port` addresses of servers that calls are spread over (see targetOf, loadBalancing). */
export function createClient<S extends DescService>(
  service: S,
  address: string | readonly string[],
  options: ClientOptions = {},
): Client<S> {
  if (options.token !== undefined && !/^[\x21-\x7e]+$/.test(options.token)) {
    // Sent as it is, a token with whitespace around it would not even reach the server: HTTP/2
    // drops a header value that begins or ends with whitespace.
    throw new TypeError("token: must be printable ASCII without whitespace (check for a space or a newline around it)");
  }
  const retry = retryChannelOptions([service], options.retry);
  const balancing = options.loadBalancing ?? (typeof address === "string" ? undefined : "round_robin");
  if (balancing) {
    // One service config carries both the retry policy and the load balancing policy.
    const config = JSON.parse((retry["grpc.service_config"] as string | undefined) ?? "{}") as Record<string, unknown>;
    retry["grpc.service_config"] = JSON.stringify({ ...config, loadBalancingConfig: [{ [balancing]: {} }] });
  }
  const channel = new grpc.Client(targetOf(address), options.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    ...retry,
    ...options.channelOptions,
  });
  const client: Record<string, unknown> = { channel, close: () => channel.close() };

  const metadataFor = (o: CallOptions | undefined) => {
    const md = new grpc.Metadata();
    if (options.token) md.set("authorization", `Bearer ${options.token}`);
    for (const [k, v] of Object.entries(o?.metadata ?? {})) md.set(k, v);
    return md;
  };
  /** The call's absolute deadline, which grpc-js's retries (all attempts) stay within. */
  const deadlineFor = (o: CallOptions | undefined) => {
    const timeout = o?.timeoutMs ?? options.timeoutMs;
    return timeout ? Date.now() + timeout : undefined;
  };
  const callArgs = (o: CallOptions | undefined) => {
    const deadline = deadlineFor(o);
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
  for (const m of service.methods) {
    const path = methodPath(m);
    const serialize = (msg: object) => Buffer.from(toBinary(m.input, create(m.input, msg as never)));
    const deserialize = (b: Buffer) => fromBinary(m.output, b);
    switch (m.methodKind) {
      case "unary":
        client[m.localName] = (request: object, o?: CallOptions) =>
          new Promise((resolve, reject) => {
            const { md, callOptions } = callArgs(o);
            let stopListening = () => {};
            const call = channel.makeUnaryRequest(path, serialize, deserialize, request, md, callOptions, (err, res) => {
              stopListening();
              if (err) reject(err);
              else resolve(res);
            });
            stopListening = onAbort(o?.signal, call);
          });
        break;
      case "server_streaming":
        client[m.localName] = (request: object, o?: CallOptions) => {
          const { md, callOptions } = callArgs(o);
          const call = channel.makeServerStreamRequest(path, serialize, deserialize, request, md, callOptions);
          call.on("status", onAbort(o?.signal, call));
          return cancelOnEarlyReturn(call);
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
          return cancelOnEarlyReturn(call);
        };
        break;
    }
  }
  return client as Client<S>;
}

/**
 * The grpc-js call itself (an async iterable of the answers, and an EventEmitter with `cancel()`),
 * whose iterator cancels the call when the caller stops reading before it ended (a `break` out of
 * `for await`), rather than leave it running (and its requests being read).
 */
function cancelOnEarlyReturn<C extends grpc.ClientReadableStream<unknown> | grpc.ClientDuplexStream<object, unknown>>(call: C): C {
  let finished = false;
  call.on("status", () => (finished = true));
  const iterate = call[Symbol.asyncIterator].bind(call);
  Object.defineProperty(call, Symbol.asyncIterator, {
    configurable: true,
    value: () => {
      const it = iterate();
      const stop = it.return?.bind(it);
      return Object.assign(it, {
        return: async (value?: unknown) => {
          if (!finished) call.cancel();
          return stop ? stop(value) : { done: true as const, value };
        },
      });
    },
  });
  return call;
}

/** Writes every request, waiting for drain when the stream's buffer is full, then half-closes. */
async function pump(requests: AsyncIterable<object>, call: grpc.ClientWritableStream<object>): Promise<void> {
  // Once the call ended (answered, failed or cancelled: the caller stopped reading), reading more
  // requests would only hold their source (a file, stdin) open.
  let ended = false;
  const stop = () => (ended = true);
  call.once("status", stop);
  call.once("error", stop);
  for await (const r of requests) {
    if (ended) return;
    if (!call.write(r)) {
      await new Promise<void>((res) => {
        const done = () => {
          call.off("drain", done);
          call.off("status", done);
          call.off("error", done);
          res();
        };
        call.once("drain", done);
        call.once("status", done);
        call.once("error", done);
      });
    }
    if (ended) return;
  }
  call.end();
}
