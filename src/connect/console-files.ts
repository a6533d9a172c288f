import { existsSync, readdirSync, readFileSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The URL path the console is served under. */
export const CONSOLE_PATH = "/console/";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

interface ConsoleFile {
  body: Buffer;
  type: string;
  /** Vite names bundles after their content (assets/index-3f9a1c.js): cached for good. */
  immutable: boolean;
}

/**
 * The console's built files (console/dist, written by `npm run build`), read once when the server
 * starts: the server answers only these exact paths, so no request can name a file outside them
 * (no directory traversal, no symlink followed later). Absent when the console was not built.
 */
export interface ConsoleFiles {
  readonly dir: string;
  get(urlPath: string): ConsoleFile | undefined;
}

/** Where `npm run build` puts the console: console/dist of the repository, seen from src/connect
 * (tsx) or dist/src/connect (compiled). */
export function defaultConsoleDir(): string | undefined {
  for (const up of ["../../console/dist", "../../../console/dist"]) {
    const dir = fileURLToPath(new URL(up, import.meta.url));
    if (existsSync(join(dir, "index.html"))) return dir;
  }
  return undefined;
}

export function loadConsoleFiles(dir: string): ConsoleFiles {
  const files = new Map<string, ConsoleFile>();
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const rel = relative(dir, path).split(sep).join("/");
        const type = CONTENT_TYPES[extname(entry.name).toLowerCase()];
        if (!type) continue; // source maps and anything unexpected are not served
        files.set(rel, { body: readFileSync(path), type, immutable: rel.startsWith("assets/") });
      }
    }
  };
  walk(dir);
  if (!files.has("index.html")) throw new Error(`the console folder ${dir} has no index.html (run npm run build)`);
  return {
    dir,
    get(urlPath) {
      if (urlPath === CONSOLE_PATH) return files.get("index.html");
      if (!urlPath.startsWith(CONSOLE_PATH)) return undefined;
      let rel: string;
      try {
        rel = decodeURIComponent(urlPath.slice(CONSOLE_PATH.length));
      } catch {
        return undefined;
      }
      return files.get(rel);
    },
  };
}

/** The headers every console answer carries: the page talks to this origin only. */
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/**
 * Answers GET and HEAD of /console and everything under /console/ (true), or leaves the request to
 * the API routes (false). /console redirects to /console/; a path that is not one of the built
 * files is 404; the console not built is 404 saying so.
 */
export function serveConsole(
  files: ConsoleFiles | undefined,
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
): boolean {
  const path = (req.url ?? "").split("?")[0]!;
  if (path !== "/console" && !path.startsWith(CONSOLE_PATH)) return false;
  const r = res as http.ServerResponse;
  if (req.method !== "GET" && req.method !== "HEAD") {
    r.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
    r.end("the console is read with GET\n");
    return true;
  }
  if (path === "/console") {
    r.writeHead(308, { location: CONSOLE_PATH });
    r.end();
    return true;
  }
  const file = files?.get(path);
  if (!file) {
    r.writeHead(404, { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS });
    r.end(files ? "not found\n" : "the console is not built: run npm run build\n");
    return true;
  }
  r.writeHead(200, {
    "content-type": file.type,
    "content-length": String(file.body.length),
    "cache-control": file.immutable ? "public, max-age=31536000, immutable" : "no-cache",
    ...SECURITY_HEADERS,
  });
  r.end(req.method === "HEAD" ? undefined : file.body);
  return true;
}
