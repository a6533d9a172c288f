import type { DescMessage, DescMethod, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { Caller } from "./roles.js";

/**
 * The handlers of a service, derived from its generated descriptor, and what they see of a call:
 * nothing of a transport, so that every transport (the grpc-js adapter in src/grpc, an HTTP one)
 * feeds the same handlers.
 */

/** A call's request headers: gRPC metadata, or HTTP headers (the Fetch API's Headers is one). */
export interface RequestHeaders {
  /** The value of header `name` (case-insensitive), or null. */
  get(name: string): string | null;
}

/** What every handler gets besides its request. */
export interface CallContext {
  /** The method's name in the proto, e.g. `Assign`. */
  readonly method: string;
  readonly requestHeader: RequestHeaders;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /** Who made the call (its token's name and role), as the Interceptor found. */
  readonly caller: Caller;
}

/**
 * Runs before every handler of a service, on every transport (authentication and roles): returns
 * who makes the call, or throws a ServiceError to refuse it. It sees only the method's descriptor
 * and the request headers.
 */
export type Interceptor = (method: DescMethod, requestHeader: RequestHeaders) => Caller;

/** Answers with a promise, or with the answer itself when it is known at once (the transports
 * then answer in the same turn). */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => Promise<MessageInitShape<O>> | MessageInitShape<O>;

export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

export type ClientStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  context: CallContext,
) => Promise<MessageInitShape<O>>;

export type BidiStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  context: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

type HandlerFor<M> = M extends { methodKind: "unary"; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? UnaryHandler<I, O>
  : M extends { methodKind: "server_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? ServerStreamingHandler<I, O>
    : M extends { methodKind: "client_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
      ? ClientStreamingHandler<I, O>
      : M extends { methodKind: "bidi_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
        ? BidiStreamingHandler<I, O>
        : never;

/** The implementation of a service, derived from its generated descriptor: one handler per
 * method, keyed by the method's local (camelCase) name. */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: HandlerFor<S["method"][K]>;
};
