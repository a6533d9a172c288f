/** Small facts about processes: run a command without blocking, is a pid alive, which processes
 * match a command line, how much memory one holds. */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CommandResult {
  /** Exit code; null when it was killed or could not start. */
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr, interleaved as they came. */
  output: string;
}

/** Runs a command without blocking this process (a server under test may run in it), killing it
 * after `timeoutMs` (default 90 s). Never rejects: a command that cannot start has status null.
 * `env` replaces this process's environment. */
export function runCommand(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "", output: "" };
    child.stdout.on("data", (d: Buffer) => {
      out.stdout += d.toString();
      out.output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out.stderr += d.toString();
      out.output += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 90_000);
    child.on("error", (err) => {
      out.output += String(err);
      clearTimeout(timer);
      resolve({ status: null, ...out });
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, ...out });
    });
  });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line contains `needle` (to prove none is left behind). */
export function processesMatching(needle: string): number[] {
  const r = spawnSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .filter((l) => l.includes(needle) && !l.includes("ps -eo"))
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((p) => Number.isInteger(p) && p !== process.pid);
}

/** Resident set size of a live process, in bytes (VmRSS of /proc/<pid>/status); throws when the
 * process is gone. */
export function residentBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Keeps the last `max` characters written to it (a child's output, for error messages). */
export class OutputTail {
  private text = "";
  constructor(private readonly max = 64_000) {}
  add(chunk: string): void {
    this.text += chunk;
    if (this.text.length > this.max * 2) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text.slice(-this.max);
  }
}
