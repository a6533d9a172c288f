/**
 * DEDICATED services for fault-injection tests (test/reliability): a test file starts its own
 * redis-server, Redis Cluster, PostgreSQL, NATS server or server processes here, so it can kill,
 * pause and restart them without disturbing the services every other test file shares
 * (./global-setup.ts). The servers themselves are harness/'s, the same the global setup starts.
 *
 * Everything started is registered with a `Dedicated` owner: `stopAll()` (call it in afterAll)
 * stops it, last started first, and removes its temporary folders; a process 'exit' backstop
 * kills whatever is left if the test process ends without afterAll. Every wait is bounded.
 * All traffic stays on 127.0.0.1.
 */
import { spawnSync } from "node:child_process";
import { Cleanup } from "../../harness/cleanup.js";
import { freePort } from "../../harness/free-port.js";
import { startNats, type NatsServer } from "../../harness/nats-server.js";
import { startPostgres, type PostgresServer } from "../../harness/postgres-server.js";
import { isAlive, processesMatching } from "../../harness/processes.js";
import { startRedis, type RedisServer } from "../../harness/redis-server.js";
import { spawnServer, type ServerProcess } from "../../harness/spawn-server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Owner of every dedicated process and folder a test file starts. */
export class Dedicated {
  private readonly cleanup = new Cleanup({ name: "dedicated", exitBackstop: true });
  /** What each started process looks like in `ps`, to prove none is left behind. */
  private readonly traces: Array<{ name: string; pid?: number; needle?: string }> = [];

  /** Registers a cleanup; returns a function that runs it early (and unregisters it). */
  own(name: string, stop: () => unknown): () => Promise<void> {
    return this.cleanup.add(name, stop);
  }

  /** Stops everything, last started first; each step bounded to 20 s. */
  stopAll(): Promise<void> {
    return this.cleanup.run();
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
  async redis(options: { name?: string; args?: string[]; port?: number } = {}): Promise<RedisServer> {
    const name = options.name ?? "redis";
    const r = await startRedis(this.cleanup, { name: `rel-${name}`, args: options.args, port: options.port });
    this.traces.push({ name, needle: `redis-server 127.0.0.1:${r.port}` });
    return r;
  }

  /**
   * A Redis Cluster of `masters` masters (no replicas), each a redis-server in its own folder on
   * its own free port (and free cluster bus port), joined with `redis-cli --cluster create`;
   * resolves once every node reports cluster_state:ok.
   */
  async redisCluster(masters = 3): Promise<{ nodes: RedisServer[]; url: string }> {
    const nodes: RedisServer[] = [];
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
   * A PostgreSQL server of this test alone (initdb in a temp folder) on a free port, crash-safe:
   * synchronous_commit stays on (a commit returns once its WAL is written, so an immediate stop
   * loses no acknowledged transaction); fsync is off because the machine itself never crashes in
   * these tests. `stop("fast" | "immediate")` and `start()` restart it on the same port.
   */
  async postgres(): Promise<PostgresServer> {
    const p = await startPostgres(this.cleanup, { name: "rel-pg", crashSafe: true });
    this.traces.push({ name: "postgres", needle: p.dataDir });
    return p;
  }

  // ------------------------------------------------------------------------------------- NATS

  /**
   * A nats-server with JetStream of this test alone on a free port, its store in its own folder.
   * `kill()` ends it (SIGKILL by default: a crash; "SIGTERM" for a clean shutdown), `start()`
   * starts it again on the same port with the same store (streams and acknowledged messages
   * survive), `pause()`/`resume()` freeze it (a hung server whose connections stay open).
   */
  async nats(options: { name?: string } = {}): Promise<NatsServer> {
    const name = options.name ?? "nats";
    const n = await startNats(this.cleanup, { name: `rel-${name}` });
    this.traces.push({ name, needle: n.dir });
    return n;
  }

  // ------------------------------------------------------------------------- server processes

  /**
   * Our server in its own process (harness/server-process.ts: `startServer` on port 0), on the
   * given database and Redis prefix; several may share them. Resolves once it announced its port.
   * It exits by itself if this process dies (its stdin closes).
   */
  async serverProcess(
    name: string,
    env: { DATABASE_URL: string; REDIS_URL: string; REDIS_PREFIX: string; LOG_LEVEL?: string } & Record<string, string>,
  ): Promise<ServerProcess> {
    const s = await spawnServer({ label: `server ${name}`, env: { LOG_LEVEL: "warn", ...env } });
    this.traces.push({ name: `server ${name}`, pid: s.pid });
    this.own(`server ${name} (pid ${s.pid})`, () => s.kill());
    return s;
  }
}
