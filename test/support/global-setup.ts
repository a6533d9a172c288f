/**
 * Vitest globalSetup: makes one PostgreSQL server and one Redis server
 * available to every test file, then shares their URLs through
 * `project.provide` (read them in tests with `inject(...)`, or better through
 * the helpers in ./services.ts).
 *
 * Rule: DATABASE_URL / REDIS_URL are used when set. Otherwise a throwaway
 * server is started on a free loopback port in a temp dir and removed again
 * in teardown (also when setup fails halfway, and as a last resort on exit).
 *
 * Test files isolate themselves from each other (fresh database per file,
 * unique Redis key prefix per file), so they can run in parallel.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, appendFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Server-level URL (admin database); use freshDatabase() for a per-file DB. */
    databaseUrl: string;
    redisUrl: string;
  }
}

const log = (msg: string) => console.error(`[test services] ${msg}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Cleanup actions, run last-in-first-out. Their synchronous part does the
 *  real work (so the process 'exit' backstop, which cannot await, still stops
 *  servers); a returned promise only waits for the process to be gone. */
const cleanups: Array<() => void | Promise<void>> = [];
async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      log(`cleanup failed: ${String(err)}`);
    }
  }
}
function runCleanupsOnExit(): void {
  // Best effort only: at 'exit' promises never settle, so just fire them.
  for (const fn of cleanups.reverse()) {
    try {
      void fn();
    } catch {
      /* ignore */
    }
  }
  cleanups.length = 0;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Backstop: if vitest exits without calling teardown, still stop servers.
  process.once("exit", runCleanupsOnExit);
  try {
    const databaseUrl = process.env.DATABASE_URL || (await startPostgres());
    const redisUrl = process.env.REDIS_URL || (await startRedis());
    project.provide("databaseUrl", databaseUrl);
    project.provide("redisUrl", redisUrl);
  } catch (err) {
    await runCleanups();
    process.removeListener("exit", runCleanupsOnExit);
    throw err;
  }
  return async () => {
    await runCleanups();
    process.removeListener("exit", runCleanupsOnExit);
  };
}

// ---------------------------------------------------------------- helpers

/** A currently free TCP port on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Run a PostgreSQL tool; as root it must run as the `postgres` user. */
export function pgTool(bin: string, args: string[], cwd: string) {
  const [cmd, argv] = isRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  return spawnSync(cmd, argv, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function pgToolOrThrow(bin: string, args: string[], cwd: string): void {
  const r = pgTool(bin, args, cwd);
  if (r.error || r.status !== 0) {
    throw new Error(`${path.basename(bin)} ${args.join(" ")} failed (${r.error ?? `exit ${r.status}`}):\n${r.stdout}${r.stderr}`);
  }
}

/** Directory holding initdb/pg_ctl/postgres: $PG_BINDIR, else the newest
 *  /usr/lib/postgresql/<ver>/bin (Debian layout), else "" (use $PATH). */
export function pgBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return "";
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, "bin", "postgres")))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  return versions.length > 0 ? path.join(root, versions[0]!, "bin") : "";
}

// ---------------------------------------------------------------- postgres

async function startPostgres(): Promise<string> {
  const bin = pgBinDir();
  const tool = (name: string) => (bin ? path.join(bin, name) : name);

  const dir = mkdtempSync(path.join(os.tmpdir(), "test-pg-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  if (isRoot) {
    // initdb refuses to run as root; hand the temp dir to the postgres user.
    const pw = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gw = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    if (pw.status !== 0) throw new Error("running as root but there is no 'postgres' user to run initdb as");
    chownSync(dir, Number(pw.stdout.trim()), Number(gw.stdout.trim()));
  }
  const data = path.join(dir, "data");
  const logFile = path.join(dir, "postgres.log");

  pgToolOrThrow(tool("initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"], dir);

  // Port picking can race with other processes; retry a few times.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    appendFileSync(
      path.join(data, "postgresql.conf"),
      [
        "",
        "# --- test harness ---",
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "max_connections = 200",
        "",
      ].join("\n"),
    );
    const r = pgTool(tool("pg_ctl"), ["start", "-w", "-t", "60", "-D", data, "-l", logFile], dir);
    if (r.status === 0) {
      cleanups.push(() => {
        pgTool(tool("pg_ctl"), ["stop", "-D", data, "-m", "immediate", "-w"], dir);
      });
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      await waitForPostgres(url);
      log(`started throwaway PostgreSQL on 127.0.0.1:${port} (${data})`);
      return url;
    }
    if (attempt >= 3) {
      throw new Error(`pg_ctl start failed:\n${r.stdout}${r.stderr}\n${readLog(logFile)}`);
    }
    // Make sure a half-started server is gone before retrying on a new port.
    pgTool(tool("pg_ctl"), ["stop", "-D", data, "-m", "immediate", "-w"], dir);
  }
}

function readLog(file: string): string {
  const r = spawnSync("tail", ["-n", "30", file], { encoding: "utf8" });
  return r.stdout ?? "";
}

export async function waitForPostgres(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} not ready: ${String(err)}`);
      await sleep(100);
    } finally {
      await client.end().catch(() => {});
    }
  }
}

// ---------------------------------------------------------------- redis

async function startRedis(): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "test-redis-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    let exited = false;
    let spawnError: Error | undefined;
    child.on("exit", () => (exited = true));
    child.on("error", (err) => {
      spawnError = err;
      exited = true;
    });
    const stop = () => stopChild(child);
    cleanups.push(stop);

    const deadline = Date.now() + 15_000;
    while (!exited && Date.now() < deadline) {
      if (await redisPing(port)) {
        log(`started throwaway Redis on 127.0.0.1:${port}`);
        return `redis://127.0.0.1:${port}`;
      }
      await sleep(50);
    }
    cleanups.splice(cleanups.indexOf(stop), 1);
    await stop();
    if (spawnError) throw new Error(`cannot start redis-server: ${spawnError.message}`);
    if (attempt >= 3) throw new Error(`redis-server did not become ready:\n${output}`);
  }
}

/** SIGTERM a child now; the promise resolves once it exited (SIGKILL after 5 s). */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  return gone.finally(() => clearTimeout(timer));
}

/** True when a Redis server answers PING on 127.0.0.1:port. */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("error", () => done(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}
