/**
 * What the benchmark needs around the server: its own PostgreSQL database and Redis key prefix,
 * server child processes, and cleanup that runs however the run ends.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { redactUrl } from "../src/util/redact-url.js";

export const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

// ------------------------------------------------------------------ cleanup

/** Cleanup actions, run last-in-first-out, each at most once, each bounded in time; a failing
 * action is reported and does not stop the others. */
export class Cleanup {
  private readonly actions: Array<{ name: string; fn: () => Promise<void> }> = [];
  private running: Promise<void> | undefined;

  add(name: string, fn: () => Promise<void>): void {
    this.actions.push({ name, fn });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.actions.length > 0) {
        const { name, fn } = this.actions.pop()!;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            fn(),
            new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timed out after 15 s")), 15_000))),
          ]);
        } catch (err) {
          log(`cleanup "${name}" failed: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.running;
  }
}

// ------------------------------------------------------------------ PostgreSQL

export { redactUrl };

/** Same URL, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function adminQuery<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Server version and durability settings; throws a readable error when unreachable. */
export async function probePostgres(url: string): Promise<string> {
  try {
    const [r] = await adminQuery<{ v: string; sc: string; fsync: string }>(
      url,
      "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync",
    );
    return `PostgreSQL ${r.v} (synchronous_commit=${r.sc}, fsync=${r.fsync})`;
  } catch (err) {
    throw new Unreachable(
      `cannot reach PostgreSQL at ${redactUrl(url)}: ${(err as Error).message || String(err)}\n` +
        `        start it, or point DATABASE_URL at a server where this user may CREATE DATABASE.`,
    );
  }
}

/** A fresh, empty database `bench_<hex>`; `drop()` removes it, disconnecting leftover clients. */
export async function createDatabase(adminUrl: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `bench_${randomBytes(6).toString("hex")}`;
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(adminUrl, `CREATE DATABASE "${name}"`);
      break;
    } catch (err) {
      // 55006: someone is connected to template1 right now.
      if ((err as { code?: string }).code !== "55006" || attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    drop: async () => void (await adminQuery(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)),
  };
}

// ------------------------------------------------------------------ Redis

export class Unreachable extends Error {}

function redisClient(url: string): Redis {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 3_000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on("error", () => {});
  return r;
}

export async function probeRedis(url: string): Promise<string> {
  const r = redisClient(url);
  let socketError: Error | undefined;
  r.on("error", (err: Error) => (socketError ??= err));
  try {
    await r.connect();
    const info = await r.info("server");
    return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? "?"}`;
  } catch (err) {
    throw new Unreachable(
      `cannot reach Redis at ${redactUrl(url)}: ${(socketError ?? (err as Error)).message || String(err)}\n        start it, or set REDIS_URL.`,
    );
  } finally {
    r.disconnect();
  }
}

/** Deletes every key starting with `prefix` (SCAN + UNLINK; other keys are untouched). Returns
 * how many were removed. */
export async function flushPrefix(url: string, prefix: string): Promise<number> {
  const r = redisClient(url);
  let removed = 0;
  try {
    await r.connect();
    const match = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", match, "COUNT", 1000);
      if (keys.length > 0) removed += await r.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
  return removed;
}

// ------------------------------------------------------------------ server child processes

// Compiled (dist/bench/*.js, what `npm run bench` runs: production-like, no loader in the
// server process) or from source through tsx.
const COMPILED = import.meta.url.endsWith(".js");
const SERVER_FILE = fileURLToPath(new URL(COMPILED ? "./server-process.js" : "./server-process.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL(COMPILED ? "../.." : "..", import.meta.url));

export interface ServerChild {
  label: string;
  address: string;
  pid: number;
  /** Why the process ended, when it did. */
  exited(): string | undefined;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Starts bench/server-process (compiled, or .ts under the tsx loader) (one process, so `nodeArgs` such as
 * --cpu-prof apply to the server itself) and waits for the line announcing its port. Other
 * output is forwarded to stderr, prefixed with the label.
 */
export async function startServerChild(label: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<ServerChild> {
  const loader = COMPILED ? [] : ["--import", import.meta.resolve("tsx")];
  const child = spawn(process.execPath, [...nodeArgs, ...loader, SERVER_FILE], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let exitReason: string | undefined;
  const gone = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    }),
  );
  child.on("error", (err) => (exitReason ??= `could not start: ${err.message}`));
  child.stdin!.on("error", () => {});
  child.stderr!.on("data", (d: Buffer) => process.stderr.write(prefixLines(`[${label}] `, d.toString())));

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(timer);
  };

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label}: no port announced within 30 s`)), 30_000);
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { benchServer?: { port: number } };
        if (msg.benchServer) {
          clearTimeout(timer);
          resolve(msg.benchServer.port);
          return;
        }
      } catch {
        /* not JSON: forward as is */
      }
      process.stderr.write(`[${label}] ${line}\n`);
    });
    void gone.then(() => {
      clearTimeout(timer);
      reject(new Error(`${label}: server process ${exitReason} before serving`));
    });
  }).catch(async (err) => {
    await stop();
    throw err;
  });

  return { label, address: `127.0.0.1:${port}`, pid: child.pid!, exited: () => exitReason, stop };
}

function prefixLines(prefix: string, text: string): string {
  return text.replace(/^(?=.)/gm, prefix);
}
