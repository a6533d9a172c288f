import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code as ConnectCode, ConnectError, type ConnectRouter, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { Code } from "../errors.js";
import { wireStatus } from "../grpc/status-mapping.js";
import { type FinishedCall, REQUEST_ID_HEADER, requestIdOf } from "../ops/call-observer.js";
import type { CallContext, Interceptor, RequestHeaders, ServiceHandlers } from "../service/handler-types.js";
import { ANONYMOUS } from "../service/roles.js";

/** The peer's address, put into every call's context values by the HTTP server (serve-http.ts). */
export const PEER = createContextKey<string | undefined>(undefined, { description: "peer address" });

export interface ConnectBindOptions {
  log: (msg: string, err: unknown) => void;
  /** Authenticates every call; absent: every caller is ANONYMOUS. The same one as gRPC's. */
  interceptor?: Interceptor;
  /** Records every finished call (the log line and metrics gRPC calls get too). */
  record: (call: FinishedCall) => void;
}

/** The status code name of a Code, as grpc-js and the metrics spell it (`INVALID_ARGUMENT`). */
const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Code).map(([name, value]) => [value, name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()]),
);
CODE_NAMES[Code.Canceled] = "CANCELLED";

/** A call's request headers as the handlers see them, with the request id the call was given. */
function headersOf(headers: Headers, requestId: string): RequestHeaders {
  return { get: (name) => (name.toLowerCase() === REQUEST_ID_HEADER ? requestId : headers.get(name)) };
}

/**
 * The routes of the HTTP port (Connect, gRPC-Web and JSON over HTTP), fed by the SAME handlers as
 * the gRPC port: each gets its decoded request and a CallContext built from the HTTP call
 * (method, request headers, signal, and the caller the same Interceptor found), and whatever it
 * throws becomes a ConnectError through the same mapping as a gRPC status (wireStatus), so codes
 * and messages are the same on both ports. Every call gets a request id (the caller's
 * `x-request-id`, or a new one, sent back as a response header) and is recorded like a gRPC call.
 *
 * Unary and server-streaming methods are served; methods that stream requests (ImportAssignments,
 * StreamAssign) are gRPC-only (see grpcOnlyMethods).
 */
export function connectRoutes(
  bindings: ReadonlyArray<{ service: DescService; handlers: ServiceHandlers<DescService> }>,
  options: ConnectBindOptions,
): (router: ConnectRouter) => void {
  return (router) => {
    for (const { service, handlers } of bindings) {
      const impl: Record<string, unknown> = {};
      const h = handlers as unknown as Record<string, (request: unknown, ctx: CallContext) => unknown>;
      for (const method of service.methods) {
        const handler = h[method.localName];
        if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
        const bound = bindMethod(method, handler, options);
        if (bound) impl[method.localName] = bound;
      }
      router.service(service, impl as never);
    }
  };
}

function bindMethod(method: DescMethod, handler: (request: unknown, ctx: CallContext) => unknown, options: ConnectBindOptions) {
  const begin = (hctx: HandlerContext) => {
    const started = performance.now();
    const requestId = requestIdOf(hctx.requestHeader.get(REQUEST_ID_HEADER) ?? undefined);
    hctx.responseHeader.set(REQUEST_ID_HEADER, requestId);
    const requestHeader = headersOf(hctx.requestHeader, requestId);
    let recorded = false;
    const finish = (err: unknown) => {
      if (recorded) return;
      recorded = true;
      let code = "OK";
      let details: string | undefined;
      if (err !== undefined) {
        const ce = err instanceof ConnectError ? err : ConnectError.from(err);
        code = CODE_NAMES[ce.code] ?? String(ce.code);
        details = ce.rawMessage;
      }
      options.record({
        requestId,
        service: method.parent.typeName,
        method: method.name,
        code,
        details,
        ms: performance.now() - started,
        peer: hctx.values.get(PEER),
        protocol: hctx.protocolName,
      });
    };
    /** Authenticates the call (throws to refuse it) and builds the handler's context. */
    const authenticate = (): CallContext => ({
      method: method.name,
      requestHeader,
      signal: hctx.signal,
      caller: options.interceptor ? options.interceptor(method, requestHeader) : ANONYMOUS,
    });
    return { authenticate, finish };
  };
  const toConnect = (err: unknown): ConnectError => {
    if (err instanceof ConnectError) return err;
    const { code, details } = wireStatus(err, options.log);
    return new ConnectError(details, code as number as ConnectCode);
  };

  switch (method.methodKind) {
    case "unary":
      return async (request: unknown, hctx: HandlerContext) => {
        const { authenticate, finish } = begin(hctx);
        try {
          const res = await handler(request, authenticate());
          finish(undefined);
          return res;
        } catch (err) {
          const ce = toConnect(err);
          finish(ce);
          throw ce;
        }
      };
    case "server_streaming":
      return async function* (request: unknown, hctx: HandlerContext) {
        const { authenticate, finish } = begin(hctx);
        let failure: ConnectError | undefined;
        try {
          yield* handler(request, authenticate()) as AsyncIterable<unknown>;
        } catch (err) {
          failure = toConnect(err);
          throw failure;
        } finally {
          // Ended early without an error: the caller went away.
          finish(failure ?? (hctx.signal.aborted ? new ConnectError("the client cancelled the call", ConnectCode.Canceled) : undefined));
        }
      };
    default:
      return undefined;
  }
}

/**
 * Methods that stream requests (ImportAssignments, StreamAssign) stay on gRPC: over HTTP/1.1 a
 * request stream cannot run beside its answers, and Connect's own refusal of one is a bare
 * "505 HTTP Version Not Supported". The HTTP port answers them itself (serve-http.ts), before
 * Connect: UNIMPLEMENTED naming the gRPC port, recorded like every call.
 */
export function grpcOnlyMethods(
  services: readonly DescService[],
  grpcAddress: string,
): Map<string, { method: DescMethod; message: string }> {
  const out = new Map<string, { method: DescMethod; message: string }>();
  for (const service of services) {
    for (const method of service.methods) {
      if (method.methodKind !== "client_streaming" && method.methodKind !== "bidi_streaming") continue;
      out.set(`/${service.typeName}/${method.name}`, {
        method,
        message: `${service.typeName}/${method.name} streams requests and is served over gRPC only (${grpcAddress}), not over Connect, gRPC-Web or HTTP/JSON`,
      });
    }
  }
  return out;
}
