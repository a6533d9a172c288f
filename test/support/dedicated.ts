/**
 * DEDICATED services for fault-injection tests (test/reliability): a test file starts its own
 * redis-server, PostgreSQL, Redis Cluster or server processes here, so it can kill, pause and
 * restart them without disturbing the services every other test file shares (./global-setup.ts,
 * whose process helpers this reuses).
 *
 * Everything started is registered with a `Dedicated` owner: `stopAll()` (call it in afterAll)
 * stops it, last started first, and removes its temporary folders; a process 'exit' backstop
 * kills whatever is left if the test process ends without afterAll. Every wait is bounded.
 * All traffic stays on 127.0.0.1.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, chownSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { freePort, isRoot, pgBinDir, pgTool, redisPing, stopChild, waitForPostgres } from "./global-setup.js";

export { freePort };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The server script the streaming tests already use: startServer on port 0, announces its port. */
const SERVER_SCRIPT = fileURLToPath(new URL("../streaming/support/server-process.ts", import.meta.url));

interface Owned {
  name: string;
  /** Stops it now; the synchronous part must do the real work (the exit backstop cannot await). */
  stop(): void | Promise<void>;
}

/** Owner of every dedicated process and folder a test file starts. */
export class Dedicated {
  private readonly owned: Owned[] = [];
  /** What each started process looks like in `ps`, to prove none is left behind. */
  private readonly traces: Array<{ name: string; pid?: number; needle?: string }> = [];
  private readonly backstop = () => {
    for (const o of this.owned.reverse()) {
      try {
        void o.stop();
      } catch {
        /* best effort */
      }
    }
    this.owned.length = 0;
  };

  constructor() {
    process.once("exit", this.backstop);
  }

  /** Registers a cleanup; returns a function that runs it early (and unregisters it). */
  own(name: string, stop: () => void | Promise<void>): () => Promise<void> {
    const o: Owned = { name, stop };
    this.owned.push(o);
    return async () => {
      const i = this.owned.indexOf(o);
      if (i >= 0) this.owned.splice(i, 1);
      await o.stop();
    };
  }

  /** Stops everything, last started first; each step bounded to 20 s. */
  async stopAll(): Promise<void> {
    while (this.owned.length > 0) {
      const o = this.owned.pop()!;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          o.stop(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timed out after 20 s")), 20_000))),
        ]);
      } catch (err) {
        console.error(`[dedicated] stopping ${o.name} failed: ${String(err)}`);
      } finally {
        clearTimeout(timer);
      }
    }
    process.removeListener("exit", this.backstop);
  }

  /** Processes this owner started that are still alive (call after stopAll: must be empty). */
  leftovers(): string[] {
    const out: string[] = [];
    for (const t of this.traces) {
      if (t.pid !== undefined && isAlive(t.pid)) out.push(`${t.name} (pid ${t.pid})`);
      if (t.needle !== undefined) for (const pid of processesMatching(t.needle)) out.push(`${t.name} (pid ${pid}: ${t.needle})`);
    }
    return [...new Set(out)];
  }

  // ------------------------------------------------------------------------------------ Redis

  /**
   * A redis-server of this test alone on a free port, in its own folder. `kill()` ends it (SIGKILL
   * by default: a crash), `start()` starts it again on the same port (loading the folder's
   * dump.rdb if a SAVE wrote one), `pause()`/`resume()` freeze it (SIGSTOP/SIGCONT: a hung server
   * whose connections stay open).
   */
  async redis(options: { name?: string; args?: string[]; port?: number } = {}): Promise<DedicatedRedis> {
    const name = options.name ?? "redis";
    const dir = mkdtempSync(path.join(os.tmpdir(), `rel-${name}-`));
    const port = options.port ?? (await freePort());
    const r = new DedicatedRedis(name, port, dir, options.args ?? []);
    this.traces.push({ name, needle: `redis-server 127.0.0.1:${port}` });
    this.own(`${name} (127.0.0.1:${port})`, () => {
      r.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    await r.start();
    return r;
  }

  /**
   * A Redis Cluster of `masters` masters (no replicas), each a redis-server in its own folder on
   * its own free port (and free cluster bus port), joined with `redis-cli --cluster create`;
   * resolves once every node reports cluster_state:ok.
   */
  async redisCluster(masters = 3): Promise<{ nodes: DedicatedRedis[]; url: string }> {
    const nodes: DedicatedRedis[] = [];
    for (let i = 0; i < masters; i++) {
      const busPort = await freePort();
      // nodes.conf lands in the node's own temp folder (redis-server has chdir'ed to --dir).
      const node = await this.redis({
        name: `cluster-node-${i}`,
        args: [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-port",
          String(busPort),
          "--cluster-node-timeout",
          "5000",
        ],
      });
      nodes.push(node);
    }
    const create = spawnSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed (${create.error ?? create.status}):\n${create.stdout}${create.stderr}`);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const states = nodes.map((n) => /cluster_state:(\w+)/.exec(n.cli("cluster", "info"))?.[1]);
      // Every node must also know every other one (the gossip has spread).
      const known = nodes.map(
        (n) =>
          n
            .cli("cluster", "nodes")
            .trim()
            .split("\n")
            .filter((l) => l.includes("master")).length,
      );
      if (states.every((s) => s === "ok") && known.every((k) => k === masters)) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok after 30 s: ${states.join(",")} / ${known.join(",")}`);
      await sleep(100);
    }
    return { nodes, url: `redis-cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}` };
  }

  // ------------------------------------------------------------------------------- PostgreSQL

  /**
   * A PostgreSQL server of this test alone (initdb in a temp folder, as the `postgres` user when
   * run as root, as global-setup.ts does) on a free port. Durability: synchronous_commit stays on
   * (a commit returns once its WAL is written, so an immediate stop loses no acknowledged
   * transaction); fsync is off because the machine itself never crashes in these tests.
   */
  async postgres(): Promise<DedicatedPostgres> {
    const bin = pgBinDir();
    const tool = (n: string) => (bin ? path.join(bin, n) : n);
    const dir = mkdtempSync(path.join(os.tmpdir(), "rel-pg-"));
    if (isRoot) {
      const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
      const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
      if (uid.status !== 0) throw new Error("running as root but there is no 'postgres' user to run initdb as");
      chownSync(dir, Number(uid.stdout.trim()), Number(gid.stdout.trim()));
    }
    const data = path.join(dir, "data");
    const p = new DedicatedPostgres(tool, dir, data, 0);
    this.traces.push({ name: "postgres", needle: data });
    this.own(`postgres (${data})`, () => {
      pgTool(tool("pg_ctl"), ["stop", "-D", data, "-m", "immediate", "-w"], dir);
      rmSync(dir, { recursive: true, force: true });
    });
    const init = pgTool(tool("initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"], dir);
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stdout}${init.stderr}`);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      appendFileSync(
        path.join(data, "postgresql.conf"),
        [
          "",
          "# --- dedicated (test/reliability) ---",
          `port = ${port}`,
          "listen_addresses = '127.0.0.1'",
          `unix_socket_directories = '${dir}'`,
          "fsync = off",
          "synchronous_commit = on",
          "max_connections = 100",
          "",
        ].join("\n"),
      );
      p.port = port;
      try {
        await p.start();
        return p;
      } catch (err) {
        if (attempt >= 3) throw err;
        await p.stop("immediate");
      }
    }
  }

  // ------------------------------------------------------------------------- server processes

  /**
   * Our server in its own process (test/streaming/support/server-process.ts: `startServer` on
   * port 0), on the given database and Redis prefix; several may share them. Resolves once it
   * announced its port. It exits by itself if this process dies (its stdin closes).
   */
  async serverProcess(
    name: string,
    env: { DATABASE_URL: string; REDIS_URL: string; REDIS_PREFIX: string; LOG_LEVEL?: string },
  ): Promise<ServerProcess> {
    const child = spawn(process.execPath, ["--import", "tsx", SERVER_SCRIPT], {
      cwd: REPO_ROOT,
      env: { ...process.env, CHILD_MODE: "server", LOG_LEVEL: "warn", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.traces.push({ name: `server ${name}`, pid: child.pid });
    let output = "";
    child.stdin!.on("error", () => {});
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const stopEarly = this.own(`server ${name} (pid ${child.pid})`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      return exited.then(() => {});
    });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server ${name} announced no port within 60 s:\n${output}`)), 60_000);
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        output += line + "\n";
        try {
          const p = (JSON.parse(line) as { childServer?: { port: number } }).childServer?.port;
          if (typeof p === "number") {
            clearTimeout(timer);
            resolve(p);
          }
        } catch {
          /* a log line */
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server ${name} ended (code ${code}, signal ${signal}) before serving:\n${output}`));
      });
    }).catch(async (err) => {
      await stopEarly();
      throw err;
    });
    return {
      name,
      pid: child.pid!,
      address: `127.0.0.1:${port}`,
      output: () => output,
      exited,
      /** SIGTERM (graceful, as src/main.ts), SIGKILL after 15 s; resolves with how it ended. */
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
          await exited;
          clearTimeout(timer);
        }
        await stopEarly();
        return exited;
      },
    };
  }
}

export interface ServerProcess {
  name: string;
  pid: number;
  address: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export class DedicatedRedis {
  private child: ChildProcess | undefined;
  private output = "";

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dir: string,
    private readonly args: string[],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts redis-server on this port (again); resolves once it answers PING (at most 15 s; a
   * port still held by the previous process is retried). */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const child = spawn(
        "redis-server",
        [
          "--port",
          String(this.port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--daemonize",
          "no",
          "--dir",
          this.dir,
          ...this.args,
        ],
        { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] },
      );
      this.child = child;
      child.stdout!.on("data", (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4_000)));
      child.stderr!.on("data", (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4_000)));
      child.on("error", () => {});
      while (this.running && Date.now() < deadline) {
        if (await redisPing(this.port)) return;
        await sleep(25);
      }
      if (this.running) {
        await stopChild(child);
        throw new Error(`${this.name} did not answer PING within 15 s:\n${this.output}`);
      }
      if (Date.now() > deadline) throw new Error(`${this.name} could not start on port ${this.port}:\n${this.output}`);
      await sleep(100); // e.g. the port not yet released: try again
    }
  }

  /** Kills the process (SIGKILL: no shutdown, no save) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGCONT"); // a paused process must be able to die on SIGTERM
    child.kill(signal);
    await gone;
  }

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

  /** redis-cli against this node, asynchronously; returns stdout (throws on failure). */
  async cliAsync(...args: string[]): Promise<string> {
    const r = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], this.dir);
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")} failed: ${r.output}`);
    return r.stdout;
  }

  /** redis-cli against this node; returns stdout (throws on failure). Blocks this process: not
   * while a server under test runs in it. */
  cli(...args: string[]): string {
    const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], { encoding: "utf8", timeout: 10_000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")} failed: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }
}

export class DedicatedPostgres {
  constructor(
    private readonly tool: (name: string) => string,
    readonly dir: string,
    readonly dataDir: string,
    public port: number,
  ) {}

  /** Admin URL (database `postgres`). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** `pg_ctl start -w`, then waits until it accepts a query (at most 60 s). Asynchronous: a
   * server under test in this process keeps running meanwhile. */
  async start(): Promise<void> {
    const r = await pgToolAsync(
      this.tool("pg_ctl"),
      ["start", "-w", "-t", "60", "-D", this.dataDir, "-l", path.join(this.dir, "postgres.log")],
      this.dir,
    );
    if (r.status !== 0) {
      const log = spawnSync("tail", ["-n", "30", path.join(this.dir, "postgres.log")], { encoding: "utf8" }).stdout;
      throw new Error(`pg_ctl start failed: ${r.output}\n${log}`);
    }
    await waitForPostgres(this.url);
  }

  /** `pg_ctl stop -m <mode> -w`: fast (clean: disconnects clients, checkpoint) or immediate
   * (crash-like: no checkpoint; crash recovery on the next start). Asynchronous. */
  async stop(mode: "fast" | "immediate"): Promise<void> {
    const r = await pgToolAsync(this.tool("pg_ctl"), ["stop", "-D", this.dataDir, "-m", mode, "-w", "-t", "60"], this.dir);
    if (r.status !== 0 && !/not running|no server running|PID file .* does not exist/i.test(r.output)) {
      throw new Error(`pg_ctl stop -m ${mode} failed: ${r.output}`);
    }
  }

  /** The postmaster's pid, when running. */
  pid(): number | undefined {
    const r = pgTool(this.tool("pg_ctl"), ["status", "-D", this.dataDir], this.dir);
    const m = /PID: (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : undefined;
  }
}

/** Runs a command without blocking this process (a server under test may run in it); at most 90 s. */
function run(cmd: string, args: string[], cwd: string): Promise<{ status: number | null; stdout: string; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let output = "";
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      output += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("error", (err) => {
      output += String(err);
      clearTimeout(timer);
      resolve({ status: null, stdout, output });
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, output });
    });
  });
}

/** A PostgreSQL tool, asynchronously; as root as the `postgres` user (as pgTool does). */
function pgToolAsync(bin: string, args: string[], cwd: string) {
  return isRoot ? run("runuser", ["-u", "postgres", "--", bin, ...args], cwd) : run(bin, args, cwd);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line contains `needle` (for leftover checks). */
export function processesMatching(needle: string): number[] {
  const r = spawnSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .filter((l) => l.includes(needle) && !l.includes("ps -eo"))
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((p) => Number.isInteger(p) && p !== process.pid);
}
