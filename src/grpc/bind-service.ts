import { EventEmitter } from "node:events";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type {
  Metadata,
  sendUnaryData,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { cancelled } from "../errors.js";
import type { CallContext, Interceptor, RequestHeaders, ServiceHandlers } from "../service/handler-types.js";
import { ANONYMOUS, type Caller } from "../service/roles.js";
import { decodeRequest, serverDefinition } from "./service-definition.js";
import { toGrpcStatus } from "./status-mapping.js";

/** A call's metadata as the handlers see request headers: the first value of a key. */
function headersOf(metadata: Metadata): RequestHeaders {
  return {
    get(name) {
      const v = metadata.get(name)[0];
      return v === undefined ? null : v.toString();
    },
  };
}

export interface BindOptions {
  log: (msg: string, err: unknown) => void;
  /** Authenticates every call; absent: every caller is ANONYMOUS. */
  interceptor?: Interceptor;
}

/** The handler's context, once `authenticate()` found the caller (it throws to refuse the call);
 * `finish()` marks the handler done, after which grpc-js's "cancelled" (which it also emits when a
 * finished call closes) no longer aborts anything. */
function contextOf(
  method: DescMethod,
  call: { metadata: Metadata; on(event: "cancelled", f: () => void): unknown },
  interceptor: Interceptor | undefined,
) {
  // The AbortController is made only when a handler asks for the signal (most unary handlers
  // never do; making one per call was about 2% of a warm page load's CPU).
  let controller: AbortController | undefined;
  let aborted = false;
  let finished = false;
  const abort = () => {
    if (finished || aborted) return;
    aborted = true;
    controller?.abort();
  };
  const signal = (): AbortSignal => {
    if (!controller) {
      controller = new AbortController();
      if (aborted) controller.abort();
    }
    return controller.signal;
  };
  call.on("cancelled", abort);
  // Only an upload can be mistaken for finished when it was cancelled (see abortOnReset); other
  // calls (page loads among them) need not walk to their HTTP/2 stream.
  if (method.methodKind === "client_streaming") abortOnReset(call, abort);
  const requestHeader = headersOf(call.metadata);
  const authenticate = (): CallContext => ({
    method: method.name,
    requestHeader,
    get signal() {
      return signal();
    },
    caller: interceptor ? interceptor(method, requestHeader) : ANONYMOUS,
  });
  return {
    authenticate,
    get signal() {
      return signal();
    },
    finish: () => (finished = true),
  };
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js does not expose it, so this walks its
 * intercepting calls down to it; undefined if a grpc-js upgrade moves it (a cancel is then noticed
 * only when grpc-js emits 'cancelled', about a millisecond later).
 */
function http2StreamOf(call: object): EventEmitter | undefined {
  let c = (call as { call?: unknown }).call;
  for (let depth = 0; c && depth < 8; depth++) {
    const stream = (c as { stream?: unknown }).stream;
    if (stream instanceof EventEmitter && typeof (stream as { rstCode?: unknown }).rstCode === "number") return stream;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * Calls `abort` as soon as the client resets the call's HTTP/2 stream. A grpc-js client cancels
 * a call by ending its side of the stream and then resetting it, so the handler first sees the
 * end of the requests as if the client had finished; grpc-js emits 'cancelled' only when the
 * stream closes, about a millisecond after the reset. Node emits 'aborted' on the stream the
 * moment the reset arrives (while the response is still open). An all-or-nothing handler
 * (ImportAssignments) asks its signal right before it commits; the earlier it knows, the fewer
 * cancelled imports slip through.
 */
function abortOnReset(call: object, abort: () => void): void {
  http2StreamOf(call)?.once("aborted", abort);
}

/** Decodes a request stream. The iterator must not destroy the call when the requests end: for
 * a bidi call that would also close the response side before the answers are sent. When the
 * requests end, a reset that follows the client's end of stream (a cancel, see abortOnReset) gets
 * one turn of the event loop to arrive; then requests that ended that way end in CANCELLED. */
async function* decodeStream(
  method: DescMethod,
  stream: ServerReadableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>,
  signal: AbortSignal,
) {
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) yield decodeRequest(method, chunk as Buffer);
  await new Promise((resolve) => setImmediate(resolve));
  if (signal.aborted) throw cancelled("the client cancelled the call before it finished sending");
}

/** Sends every message a streaming handler yields, then the status. */
function sendAll(
  call: ServerWritableStream<Buffer, unknown> | ServerDuplexStream<Buffer, unknown>,
  signal: AbortSignal,
  finish: () => void,
  fail: (err: unknown) => object,
  start: () => AsyncIterable<unknown>,
): void {
  (async () => {
    for await (const msg of start()) {
      if (signal.aborted) return;
      // Wait until grpc-js handed the message to HTTP/2 (which respects the peer's window): its
      // own buffer takes 16 messages before write() returns false, so waiting for 'drain' let a
      // caller that stopped reading have 16 more batches answered (and held).
      await new Promise<void>((r) => call.write(msg, () => r()));
    }
  })()
    .finally(finish)
    .then(
      () => call.end(),
      // grpc-js turns an 'error' event into the call's status, after the messages already written.
      (err) => call.emit("error", Object.assign(new Error(), fail(err))),
    );
}

/**
 * One unary call: its handler context (the CallContext itself) and its answer, in one object
 * instead of a set of closures, promises and an event listener per call. The signal is made only
 * when the handler reads it; then a cancel that already happened (grpc-js's `cancelled` flag) or
 * comes before the handler is done aborts it. A handler that answers at once (a value, not a
 * promise) is answered in the same turn.
 */
class UnaryCall implements CallContext {
  readonly method: string;
  readonly requestHeader: RequestHeaders;
  caller: Caller = ANONYMOUS;
  private controller: AbortController | undefined;
  private finished = false;

  constructor(
    private readonly call: ServerUnaryCall<Buffer, unknown> & { cancelled?: boolean },
    private readonly callback: sendUnaryData<unknown>,
    private readonly fail: (err: unknown) => object,
    method: DescMethod,
  ) {
    this.method = method.name;
    this.requestHeader = headersOf(call.metadata);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = new AbortController();
      this.controller = controller;
      if (this.call.cancelled) controller.abort();
      else this.call.once("cancelled", () => this.finished || controller.abort());
    }
    return this.controller.signal;
  }

  answer(res: unknown): void {
    this.finished = true;
    this.callback(null, res);
  }

  refuse(err: unknown): void {
    this.finished = true;
    this.callback(this.fail(err));
  }
}

function isPromise(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as PromiseLike<unknown> | undefined)?.then === "function";
}

/** Runs a unary handler: the caller authenticated before the request is decoded (a stranger
 * learns nothing of its shape), every error mapped to a status. */
function runUnary(
  method: DescMethod,
  handler: (...args: unknown[]) => unknown,
  interceptor: Interceptor | undefined,
  fail: (err: unknown) => object,
  call: ServerUnaryCall<Buffer, unknown>,
  callback: sendUnaryData<unknown>,
): void {
  const c = new UnaryCall(call, callback, fail, method);
  let res: unknown;
  try {
    if (interceptor) c.caller = interceptor(method, c.requestHeader);
    res = handler(decodeRequest(method, call.request), c);
  } catch (err) {
    c.refuse(err);
    return;
  }
  if (isPromise(res))
    res.then(
      (r) => c.answer(r),
      (err) => c.refuse(err),
    );
  else c.answer(res);
}

/**
 * The grpc-js definition and implementation of a service: each handler gets a decoded request
 * and a context, and every error it throws is mapped to a status in one place.
 */
export function bindService<S extends DescService>(service: S, handlers: ServiceHandlers<S>, options: BindOptions) {
  const impl: UntypedServiceImplementation = {};
  const h = handlers as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const method of service.methods) {
    const handler = h[method.localName];
    if (!handler) throw new Error(`no handler for ${method.parent.typeName}.${method.name}`);
    const fail = (err: unknown) => toGrpcStatus(err, options.log);
    switch (method.methodKind) {
      case "unary":
        impl[method.localName] = (call: ServerUnaryCall<Buffer, unknown>, callback: sendUnaryData<unknown>) =>
          runUnary(method, handler, options.interceptor, fail, call, callback);
        break;
      case "server_streaming":
        impl[method.localName] = (call: ServerWritableStream<Buffer, unknown>) => {
          const { authenticate, signal, finish } = contextOf(method, call, options.interceptor);
          sendAll(call, signal, finish, fail, () => {
            const ctx = authenticate();
            return handler(decodeRequest(method, call.request), ctx) as AsyncIterable<unknown>;
          });
        };
        break;
      case "client_streaming":
        impl[method.localName] = (call: ServerReadableStream<Buffer, unknown>, callback: sendUnaryData<unknown>) => {
          const { authenticate, signal, finish } = contextOf(method, call, options.interceptor);
          (async () => {
            const ctx = authenticate();
            return handler(decodeStream(method, call, signal), ctx);
          })()
            .finally(finish)
            .then(
              (res) => callback(null, res),
              (err) => callback(fail(err)),
            );
        };
        break;
      case "bidi_streaming":
        impl[method.localName] = (call: ServerDuplexStream<Buffer, unknown>) => {
          const { authenticate, signal, finish } = contextOf(method, call, options.interceptor);
          sendAll(call, signal, finish, fail, () => {
            const ctx = authenticate();
            return handler(decodeStream(method, call, signal), ctx) as AsyncIterable<unknown>;
          });
        };
        break;
    }
  }
  return { definition: serverDefinition(service), implementation: impl };
}
