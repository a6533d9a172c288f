/**
 * A PostgreSQL server of its own: initdb in a temp folder (as the `postgres` user when run as
 * root: initdb refuses root), started with pg_ctl on a free loopback port, ready once it answers
 * a query. For the test services (throwaway: nothing durable) and for fault tests (crash-safe: an
 * immediate stop loses no acknowledged commit).
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import type { Cleanup } from "./cleanup.js";
import { freePort } from "./free-port.js";
import { runCommand, type CommandResult } from "./processes.js";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Directory holding initdb/pg_ctl/postgres: $PG_BINDIR, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian's layout), else "" (use $PATH). */
function pgBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return "";
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, "bin", "postgres")))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  return versions.length > 0 ? path.join(root, versions[0]!, "bin") : "";
}

function toolPath(name: string): string {
  const bin = pgBinDir();
  return bin ? path.join(bin, name) : name;
}

/** The command line of a PostgreSQL tool: as root, run as the `postgres` user. */
function asPostgresUser(name: string, args: string[]): [string, string[]] {
  return isRoot ? ["runuser", ["-u", "postgres", "--", toolPath(name), ...args]] : [toolPath(name), args];
}

/** A PostgreSQL tool (initdb, pg_ctl), without blocking this process. */
function pgTool(name: string, args: string[], cwd: string): Promise<CommandResult> {
  const [cmd, argv] = asPostgresUser(name, args);
  return runCommand(cmd, argv, { cwd });
}

/** Resolves once PostgreSQL at `url` answers a query (at most `timeoutMs`, default 30 s). */
async function waitForPostgres(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} not ready: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await client.end().catch(() => {});
    }
  }
}

export interface PostgresOptions {
  /** Names the temp folder `<name>-*`. */
  name: string;
  /** synchronous_commit on, full_page_writes on: a crash (an immediate stop) loses no
   * acknowledged commit. Otherwise both are off, for speed. fsync is off either way (the machine
   * itself never crashes in a test). Default false. */
  crashSafe?: boolean;
  /** Default 100. */
  maxConnections?: number;
}

export class PostgresServer {
  constructor(
    readonly dir: string,
    readonly dataDir: string,
    public port: number,
  ) {}

  /** Admin URL (database `postgres`, user `postgres`, trust authentication). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get logFile(): string {
    return path.join(this.dir, "postgres.log");
  }

  /** `pg_ctl start -w`, then waits until it answers a query (at most 60 s). */
  async start(): Promise<void> {
    const r = await pgTool("pg_ctl", ["start", "-w", "-t", "60", "-D", this.dataDir, "-l", this.logFile], this.dir);
    if (r.status !== 0) {
      const log = spawnSync("tail", ["-n", "30", this.logFile], { encoding: "utf8" }).stdout ?? "";
      throw new Error(`pg_ctl start failed: ${r.output}\n${log}`);
    }
    await waitForPostgres(this.url);
  }

  /** `pg_ctl stop -m <mode> -w`: fast (clean: disconnects clients, checkpoint) or immediate
   * (crash-like: no checkpoint; crash recovery on the next start). Stopping a stopped server is
   * no error. */
  async stop(mode: "fast" | "immediate"): Promise<void> {
    const r = await pgTool("pg_ctl", ["stop", "-D", this.dataDir, "-m", mode, "-w", "-t", "60"], this.dir);
    if (r.status !== 0 && !/not running|no server running|PID file .* does not exist/i.test(r.output)) {
      throw new Error(`pg_ctl stop -m ${mode} failed: ${r.output}`);
    }
  }

  /** An immediate stop that blocks this process until done (for cleanups that cannot wait). */
  stopNow(): void {
    const [cmd, argv] = asPostgresUser("pg_ctl", ["stop", "-D", this.dataDir, "-m", "immediate", "-w"]);
    spawnSync(cmd, argv, { cwd: this.dir, stdio: "ignore" });
  }

  /** The postmaster's pid, when running. */
  pid(): number | undefined {
    const [cmd, argv] = asPostgresUser("pg_ctl", ["status", "-D", this.dataDir]);
    const m = /PID: (\d+)/.exec(spawnSync(cmd, argv, { cwd: this.dir, encoding: "utf8" }).stdout ?? "");
    return m ? Number(m[1]) : undefined;
  }
}

/** The `postgres` user's uid and gid, which PostgreSQL's tools run as when this process is root. */
export function postgresUser(): { uid: number; gid: number } {
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (uid.status !== 0) throw new Error("running as root but there is no 'postgres' user to run PostgreSQL as");
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Whether this process is root (PostgreSQL's tools and PgBouncer then run as `postgres`). */
export const runsAsRoot = isRoot;

/** Appends this server's own settings to postgresql.conf and starts it on a free port (three
 * tries, each on a new one; later lines of the file win). */
async function configureAndStart(server: PostgresServer, name: string, settings: string[]): Promise<PostgresServer> {
  for (let attempt = 1; ; attempt++) {
    server.port = await freePort();
    appendFileSync(
      path.join(server.dataDir, "postgresql.conf"),
      [
        "",
        `# --- ${name} ---`,
        `port = ${server.port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${server.dir}'`,
        ...settings,
        "",
      ].join("\n"),
    );
    try {
      await server.start();
      return server;
    } catch (err) {
      if (attempt >= 3) throw err;
      await server.stop("immediate"); // a half-started server must be gone before the next port
    }
  }
}

/** A new temp folder for a PostgreSQL data directory, owned by `postgres` when this is root;
 * `owner` stops the server and removes the folder. */
function serverFolder(owner: Cleanup, name: string): PostgresServer {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  const server = new PostgresServer(dir, path.join(dir, "data"), 0);
  owner.add(`PostgreSQL (${server.dataDir})`, () => {
    if (existsSync(path.join(server.dataDir, "postmaster.pid"))) server.stopNow();
    rmSync(dir, { recursive: true, force: true });
  });
  if (isRoot) {
    const user = postgresUser();
    chownSync(dir, user.uid, user.gid);
  }
  return server;
}

/**
 * A streaming replica (a hot standby) of `primary`: `pg_basebackup -R` (which writes
 * standby.signal and primary_conninfo) into a new temp folder, then a start on a free port. It
 * answers reads and replays the primary's WAL as it streams in; `SELECT pg_wal_replay_pause()` on
 * it holds replay (lag), `pg_wal_replay_resume()` lets it catch up. `owner` stops it and removes
 * the folder. The primary needs nothing beyond initdb's defaults (wal_level replica, WAL senders,
 * replication allowed from 127.0.0.1 with trust).
 */
export async function startStandby(owner: Cleanup, primary: PostgresServer, options: { name: string }): Promise<PostgresServer> {
  const server = serverFolder(owner, options.name);
  const backup = await pgTool(
    "pg_basebackup",
    ["-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-D", server.dataDir, "-R", "-X", "stream", "--no-sync"],
    server.dir,
  );
  if (backup.status !== 0) throw new Error(`pg_basebackup failed (${backup.status ?? "could not start"}):\n${backup.output}`);
  return configureAndStart(server, options.name, ["hot_standby = on", "hot_standby_feedback = on"]);
}

/**
 * initdb in a new temp folder, then a start on a free port (three tries, each on a new one).
 * `owner` stops the server and removes the folder (registered before initdb, so a failed start is
 * cleaned up too).
 */
export async function startPostgres(owner: Cleanup, options: PostgresOptions): Promise<PostgresServer> {
  const server = serverFolder(owner, options.name);
  const init = await pgTool(
    "initdb",
    ["-D", server.dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"],
    server.dir,
  );
  if (init.status !== 0) throw new Error(`initdb failed (${init.status ?? "could not start"}):\n${init.output}`);
  const durability = options.crashSafe ? ["synchronous_commit = on"] : ["synchronous_commit = off", "full_page_writes = off"];
  return configureAndStart(server, options.name, ["fsync = off", ...durability, `max_connections = ${options.maxConnections ?? 100}`]);
}
