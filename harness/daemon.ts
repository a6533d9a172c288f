/**
 * A server program (redis-server, nats-server) run as a child process on one loopback port, in a
 * folder of its own. `start()` after `kill()` brings it back on the same port with the same folder
 * (a restart); `pause()`/`resume()` freeze and thaw it (SIGSTOP/SIGCONT: a hung server whose
 * connections stay open). Every wait is bounded.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Cleanup } from "./cleanup.js";
import { freePort } from "./free-port.js";
import { OutputTail } from "./processes.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DaemonProgram {
  command: string;
  /** The arguments of a start on `port`, keeping its files in `dir`. */
  args(port: number, dir: string): string[];
  /** True once the server answers on `port` (false or a rejection: not yet). */
  ready(port: number): Promise<boolean>;
  /** Run it as this user (a program that refuses root); default: as this process. */
  user?: { uid: number; gid: number };
}

export class Daemon {
  private child: ChildProcess | undefined;
  private readonly tail = new OutputTail(4_000);

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    private readonly program: DaemonProgram,
  ) {}

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What it printed last (for error messages). */
  output(): string {
    return this.tail.toString();
  }

  /**
   * Starts it on its port (again) and resolves once it answers, within `timeoutMs` (default 15 s).
   * If it exits at once (its port still held by the process before it), it is started again until
   * then; with `retryPort: false` the first exit fails (a fresh port someone else took: the caller
   * picks another).
   */
  async start(options: { timeoutMs?: number; retryPort?: boolean } = {}): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const timeoutMs = options.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const child = spawn(this.program.command, this.program.args(this.port, this.dir), {
        cwd: this.dir,
        stdio: ["ignore", "pipe", "pipe"],
        ...this.program.user,
      });
      this.child = child;
      child.stdout!.on("data", (d: Buffer) => this.tail.add(d.toString()));
      child.stderr!.on("data", (d: Buffer) => this.tail.add(d.toString()));
      let spawnError: Error | undefined;
      child.on("error", (err) => (spawnError = err));
      while (this.running && Date.now() < deadline) {
        if (await this.program.ready(this.port).catch(() => false)) return;
        await sleep(25);
      }
      if (spawnError) throw new Error(`cannot start ${this.program.command} (${this.name}): ${spawnError.message}`);
      if (this.running) {
        await this.kill();
        throw new Error(`${this.name} did not answer on 127.0.0.1:${this.port} within ${timeoutMs / 1000} s:\n${this.output()}`);
      }
      if (options.retryPort === false || Date.now() > deadline) {
        throw new Error(`${this.name} could not start on port ${this.port}:\n${this.output()}`);
      }
      await sleep(100); // e.g. the port not yet released: try again
    }
  }

  /** Ends the process (SIGKILL by default: a crash, no shutdown) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGCONT"); // a paused process must be able to act on SIGTERM
    child.kill(signal);
    await gone;
  }

  /** SIGKILL without waiting (for cleanups that cannot wait). */
  killNow(): void {
    if (this.child && this.running) this.child.kill("SIGKILL");
  }

  /** Freezes the process: its connections stay open but nothing is answered. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }
}

/**
 * Creates a folder `<name>-*` in the temp dir and registers with `owner` the removal of both the
 * process and the folder (registered before the start, so a failed start is cleaned up too); then
 * starts the daemon `make` returns on `port`, or on a free port (three tries, each on a new one).
 */
export async function startDaemon<D extends Daemon>(
  owner: Cleanup,
  options: { name: string; port?: number },
  make: (port: number, dir: string) => D,
): Promise<D> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${options.name}-`));
  let daemon: D | undefined;
  const remove = () => rmSync(dir, { recursive: true, force: true });
  owner.add(`${options.name} (${dir})`, () => {
    daemon?.killNow();
    remove();
    return daemon?.kill().then(remove); // and once it is gone, whatever it wrote meanwhile
  });
  for (let attempt = 1; ; attempt++) {
    daemon = make(options.port ?? (await freePort()), dir);
    try {
      await daemon.start({ retryPort: options.port !== undefined });
      return daemon;
    } catch (err) {
      if (options.port !== undefined || attempt >= 3) throw err;
    }
  }
}
