/**
 * Starts ./server-process.ts (see there for its modes and environment) as a child process and
 * resolves once it announced its port. Compiled (dist/harness/*.js, what `npm run bench` runs: no
 * loader in the server process) it starts the compiled script; from source (tests, tsx) the .ts
 * under the tsx loader.
 */
import { spawn } from "node:child_process";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { OutputTail, residentBytes, type Exit } from "./processes.js";

const COMPILED = import.meta.url.endsWith(".js");
const SCRIPT = fileURLToPath(new URL(COMPILED ? "./server-process.js" : "./server-process.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL(COMPILED ? "../.." : "..", import.meta.url));

export type ServerProcessMode = "server" | "main" | "trivial";

export interface SpawnServerOptions {
  /** Names the process in errors and in forwarded output. */
  label: string;
  /** Default "server". */
  mode?: ServerProcessMode;
  /** Its environment, on top of this process's (DATABASE_URL, REDIS_URL, REDIS_PREFIX, ...). An
   * undefined value removes a variable. */
  env?: Record<string, string | undefined>;
  /** Start from an empty environment instead of this process's: exactly `env` (to see defaults). */
  cleanEnv?: boolean;
  /** Node flags (--expose-gc, --cpu-prof, ...): they apply to the server itself. */
  nodeArgs?: string[];
  /** Also copy its output to this process's stderr, each line prefixed with `[label] `. */
  forwardOutput?: boolean;
  /** How long it may take to announce its port; default 60 s. */
  startTimeoutMs?: number;
  /** Another build's compiled harness/server-process.js (a benchmark comparing two builds in the
   * same run); default this build's. */
  script?: string;
}

export interface ServerProcess {
  label: string;
  pid: number;
  port: number;
  /** 127.0.0.1:<port> */
  address: string;
  /** The JSON line that announced the port (in mode main: the "serving" log entry). */
  announcement: Record<string, unknown>;
  /** Every JSON line it printed on stdout so far (log entries, announcements; the last 10,000). */
  messages: Record<string, unknown>[];
  /** Settles once the process ended. */
  exited: Promise<Exit>;
  hasExited(): boolean;
  /** How it ended ("exited with code 0", "killed by SIGKILL"), once it did. */
  exitReason(): string | undefined;
  /** What it printed (stdout and stderr; the last 256 kB), for failure messages. */
  output(): string;
  /** Calls `listener` with every JSON line printed from now on. */
  onMessage(listener: (message: Record<string, unknown>) => void): void;
  signal(signal: NodeJS.Signals): void;
  /** Its resident memory in bytes (from /proc). */
  residentBytes(): number;
  /** SIGTERM (a graceful shutdown), SIGKILL after `graceMs` (default 15 s); resolves with how it
   * ended. */
  stop(graceMs?: number): Promise<Exit>;
  /** SIGKILL (sent before this returns); resolves once it is gone. */
  kill(): Promise<Exit>;
}

export async function spawnServer(options: SpawnServerOptions): Promise<ServerProcess> {
  const { label } = options;
  const env: NodeJS.ProcessEnv = { ...(options.cleanEnv ? {} : process.env), SERVER_PROCESS_MODE: options.mode ?? "server" };
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const loader = COMPILED || options.script ? [] : ["--import", "tsx"];
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...loader, options.script ?? SCRIPT], {
    cwd: REPO_ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const tail = new OutputTail(256_000);
  const messages: Record<string, unknown>[] = [];
  const listeners: Array<(m: Record<string, unknown>) => void> = [];
  let exit: Exit | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<Exit>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    }),
  );
  child.on("error", (err) => (spawnError ??= err));
  child.stdin.on("error", () => {}); // it may be gone before we write or close
  const forward = (text: string) => {
    if (options.forwardOutput) process.stderr.write(text.replace(/^(?=.)/gm, `[${label}] `));
  };
  child.stderr.on("data", (d: Buffer) => {
    tail.add(d.toString());
    forward(d.toString());
  });

  const kill = (): Promise<Exit> => {
    if (exit === undefined && child.pid !== undefined) child.kill("SIGKILL");
    return child.pid === undefined ? Promise.resolve({ code: null, signal: null }) : exited;
  };

  const limit = options.startTimeoutMs ?? 60_000;
  let announcement: Record<string, unknown>;
  let port: number;
  try {
    [announcement, port] = await new Promise<[Record<string, unknown>, number]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label}: no port announced within ${limit / 1000} s:\n${tail}`)), limit);
      readline.createInterface({ input: child.stdout }).on("line", (line) => {
        tail.add(`${line}\n`);
        let message: Record<string, unknown> | undefined;
        try {
          const parsed: unknown = JSON.parse(line);
          if (parsed !== null && typeof parsed === "object") message = parsed as Record<string, unknown>;
        } catch {
          /* not JSON */
        }
        if (!message) return forward(`${line}\n`);
        messages.push(message);
        if (messages.length > 10_000) messages.splice(0, messages.length - 10_000);
        for (const l of listeners) l(message);
        const announced =
          (message.serverProcess as { port?: unknown } | undefined)?.port ?? (message.msg === "serving" ? message.port : undefined);
        if (typeof announced === "number") {
          clearTimeout(timer);
          resolve([message, announced]);
        } else forward(`${line}\n`);
      });
      void exited.then(() => {
        clearTimeout(timer);
        const how = spawnError ? `could not start (${spawnError.message})` : describe(exit!);
        reject(new Error(`${label}: server process ${how} before serving:\n${tail}`));
      });
    });
  } catch (err) {
    await kill();
    throw err;
  }

  return {
    label,
    pid: child.pid!,
    port,
    address: `127.0.0.1:${port}`,
    announcement,
    messages,
    exited,
    hasExited: () => exit !== undefined,
    exitReason: () => (exit ? describe(exit) : undefined),
    output: () => tail.toString(),
    onMessage: (listener) => void listeners.push(listener),
    signal: (signal) => void child.kill(signal),
    residentBytes: () => residentBytes(child.pid!),
    async stop(graceMs = 15_000) {
      if (exit !== undefined) return exit;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    kill,
  };
}

function describe(exit: Exit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}
