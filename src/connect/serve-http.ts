import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { MAX_MESSAGE_BYTES } from "assignment-client/limits";
import { type FinishedCall, REQUEST_ID_HEADER, requestIdOf } from "../ops/call-observer.js";
import { PEER } from "./connect-routes.js";
import { type ConsoleFiles, serveConsole } from "./console-files.js";

export interface HttpServing {
  port: number;
  /** Stops taking connections; in-flight calls get `graceMs`, then their connections are closed. */
  close(graceMs: number): Promise<void>;
}

/**
 * The HTTP port: the Connect protocol (JSON or binary, unary over POST or GET, server streams),
 * gRPC-Web and plain HTTP/JSON POSTs, all through `@connectrpc/connect-node` over `routes`.
 * Plaintext: HTTP/1.1. With TLS: HTTP/2 with HTTP/1.1 for clients that do not offer h2 (ALPN).
 * gRPC itself is served on the gRPC port only.
 */
export async function serveHttp(options: {
  routes: (router: ConnectRouter) => void;
  host: string;
  port: number;
  tls?: { certFile: string; keyFile: string };
  shutdownSignal: AbortSignal;
  /** Paths answered UNIMPLEMENTED with their message, before Connect (see grpcOnlyMethods). */
  grpcOnly: ReadonlyMap<string, { method: { name: string; parent: { typeName: string } }; message: string }>;
  record: (call: FinishedCall) => void;
  /** The web console's files, served under /console/ (console-files.ts); absent: /console/ says it is not built. */
  console?: ConsoleFiles;
}): Promise<HttpServing> {
  const connect = connectNodeAdapter({
    routes: options.routes,
    grpc: false,
    connect: true,
    grpcWeb: true,
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    // A misspelt field is refused (INVALID_ARGUMENT naming it), not silently dropped.
    jsonOptions: { ignoreUnknownFields: false },
    shutdownSignal: options.shutdownSignal,
    contextValues: (req) => {
      const s = req.socket;
      return createContextValues().set(PEER, s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : undefined);
    },
  });
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (serveConsole(options.console, req, res)) return;
    const refused = options.grpcOnly.get((req.url ?? "").split("?")[0]!);
    if (!refused) return connect(req as never, res as never);
    const requestId = requestIdOf(req.headers[REQUEST_ID_HEADER]);
    const grpcWeb = String(req.headers["content-type"] ?? "").startsWith("application/grpc-web");
    // The gRPC-Web protocol carries the status in headers (a "trailers-only" answer); Connect's
    // (and plain HTTP's) is an HTTP status with a JSON body naming the code.
    if (grpcWeb) {
      res.writeHead(200, {
        "content-type": String(req.headers["content-type"]),
        "grpc-status": "12",
        "grpc-message": encodeURIComponent(refused.message),
        [REQUEST_ID_HEADER]: requestId,
      });
      res.end();
    } else {
      res.writeHead(501, { "content-type": "application/json", [REQUEST_ID_HEADER]: requestId });
      res.end(JSON.stringify({ code: "unimplemented", message: refused.message }));
    }
    req.resume();
    options.record({
      requestId,
      service: refused.method.parent.typeName,
      method: refused.method.name,
      code: "UNIMPLEMENTED",
      details: refused.message,
      ms: 0,
      peer: req.socket.remoteAddress ? `${req.socket.remoteAddress}:${req.socket.remotePort}` : undefined,
      protocol: grpcWeb ? "grpc-web" : "connect",
    });
  };
  const server: http.Server | http2.Http2SecureServer = options.tls
    ? http2.createSecureServer(
        { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile), allowHTTP1: true },
        handler,
      )
    : http.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  if (!(server instanceof http.Server)) {
    server.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (server instanceof http.Server) server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
      if (!(await Promise.race([closed.then(() => true), late]))) {
        if (server instanceof http.Server) server.closeAllConnections();
        else for (const s of sessions) s.destroy();
      }
      clearTimeout(timer);
      await closed;
    },
  };
}
