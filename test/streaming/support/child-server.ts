/**
 * Starts ./server-process.ts in a child process (node + the tsx loader, one process) on a fresh
 * database and Redis prefix of the test services, and lets a test read its memory and signal it.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { AssignmentService, createClient, ExperimentService, type Client } from "../../../src/client/index.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../../support/services.js";

const SCRIPT = fileURLToPath(new URL("./server-process.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface ChildServer {
  pid: number;
  address: string;
  databaseUrl: string;
  redisPrefix: string;
  assignments: Client<typeof AssignmentService>;
  experiments: Client<typeof ExperimentService>;
  /** Resident set size of the server process, in bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /** Resolves with the exit code (null when killed by a signal) and signal once the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /** Sends SIGUSR2 and resolves with the memory the process reports after a full garbage
   * collection (start it with nodeArgs ["--expose-gc"]). */
  memoryAfterGc(): Promise<NodeJS.MemoryUsage>;
  /** Everything the process wrote (stdout and stderr), for failure messages. */
  output(): string;
  signal(sig: NodeJS.Signals): void;
  /** Closes the clients, kills the process if still running (SIGKILL), drops database and keys. */
  stop(): Promise<void>;
}

export async function startChildServer(
  options: { mode?: "server" | "main"; env?: Record<string, string>; nodeArgs?: string[] } = {},
): Promise<ChildServer> {
  const db = await freshDatabase();
  const prefix = freshRedisPrefix();
  const mode = options.mode ?? "server";
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), "--import", "tsx", SCRIPT], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      CHILD_MODE: mode,
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl(),
      REDIS_PREFIX: prefix,
      LOG_LEVEL: mode === "main" ? "info" : "warn",
      // src/main.ts (config.ts): no admin token in tests, and no fixed metrics port (several
      // servers run at once).
      INSECURE_DEV_MODE: "1",
      METRICS_PORT: "0",
      ...options.env,
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  let done = false;
  const memoryWaiters: Array<(m: NodeJS.MemoryUsage) => void> = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true;
      resolve({ code, signal });
    }),
  );
  child.stdin!.on("error", () => {});
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));

  const cleanup = async () => {
    if (!done) {
      child.kill("SIGKILL");
      await exited;
    }
    await flushPrefix(redisUrl(), prefix);
    await db.drop();
  };

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child server announced no port within 30 s:\n${output}`)), 30_000);
      const lines = readline.createInterface({ input: child.stdout! });
      lines.on("line", (line) => {
        output += line + "\n";
        try {
          const msg = JSON.parse(line) as { childServer?: { port: number }; childMemory?: NodeJS.MemoryUsage; msg?: string; port?: number };
          if (msg.childMemory) memoryWaiters.shift()?.(msg.childMemory);
          const p = msg.childServer?.port ?? (msg.msg === "serving" ? msg.port : undefined);
          if (typeof p === "number") {
            clearTimeout(timer);
            resolve(p);
          }
        } catch {
          /* not JSON */
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`child server ended (code ${code}, signal ${signal}) before serving:\n${output}`));
      });
    });
  } catch (err) {
    await cleanup();
    throw err;
  }

  const address = `127.0.0.1:${port}`;
  const channelOptions = { "grpc.use_local_subchannel_pool": 1 };
  const assignments = createClient(AssignmentService, address, { timeoutMs: 60_000, channelOptions });
  const experiments = createClient(ExperimentService, address, { timeoutMs: 60_000, channelOptions });
  return {
    pid: child.pid!,
    address,
    databaseUrl: db.url,
    redisPrefix: prefix,
    assignments,
    experiments,
    rss() {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (!m) throw new Error("no VmRSS in /proc/<pid>/status");
      return Number(m[1]) * 1024;
    },
    memoryAfterGc() {
      return new Promise((resolve) => {
        memoryWaiters.push(resolve);
        child.kill("SIGUSR2");
      });
    },
    exited,
    hasExited: () => done,
    output: () => output,
    signal: (sig) => void child.kill(sig),
    async stop() {
      assignments.close();
      experiments.close();
      await cleanup();
    },
  };
}
