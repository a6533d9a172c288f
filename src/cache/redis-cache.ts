import { Cluster, Redis } from "ioredis";
import type { StoredAssignment } from "../engine/evaluate.js";
import type { AssignmentCache, CacheCell } from "./assignment-cache.js";

/** How many Redis hash slots one experiment's entries spread over on a Redis Cluster. A single
 * Redis has no slots to spread over, so it uses one shard: one MGET per experiment per batch. */
export const CLUSTER_SHARDS = 16;

/** Keys per fill script. */
const FILL_CHUNK = 250;

/**
 * How long a fill may wait for Redis's acknowledgement before Redis counts as failed (which pauses
 * the Redis layer, see pauseAfterFailureMs, and drops the fills of that pause). Reads keep the
 * 500 ms timeout of connectRedis: a read slower than that is slower than asking PostgreSQL. A fill
 * is answered by nobody and waits behind the fills sent before it, up to MAX_PENDING_FILL_CELLS
 * values (src/service/assigner.ts) plus a stream's batches in flight: on a busy machine, or while
 * Redis holds writes back, the last of them is acknowledged well after 500 ms (over 1.5 s seen)
 * though Redis is healthy. Only a Redis that acknowledges nothing for this long is failing.
 */
const FILL_TIMEOUT_MS = 5_000;

/**
 * Redis layer. Key layout: `<prefix><installation>:a:{<experiment id>.<generation>.<shard>}:<unit id>`,
 * value `<variant id>.<source>`. The hash tag keeps a shard's keys in one slot, so a batch is one
 * MGET (or one fill script) per experiment and shard, all in one round trip with auto-pipelining,
 * and valid on Redis Cluster, where no command ever spans two slots.
 */
export class RedisCache implements AssignmentCache {
  private readonly redis: Redis | Cluster;
  private readonly shards: number;
  private warned = 0;
  /** After a failed read or fill, reads leave Redis alone until then (ms since epoch): a hung
   * Redis costs one command timeout per second, not one per call. */
  private readsResumeAt = 0;
  /** After a failed fill, fills leave Redis alone until then. A slow read does not stop fills:
   * they are answered by nobody and have their own timeout (FILL_TIMEOUT_MS). */
  private fillsResumeAt = 0;

  constructor(
    redis: Redis | Cluster,
    private readonly options: {
      prefix: string;
      ttlSeconds: number;
      log?: (msg: string) => void;
      /** How long to answer from PostgreSQL alone after a Redis command failed; default 1,000 ms. */
      pauseAfterFailureMs?: number;
    },
  ) {
    this.redis = redis;
    // Fills go over their own connection, in chunks: a read never queues behind a big fill
    // (Redis runs one script at a time, so a chunk is the longest a read can wait). That
    // connection has its own, longer command timeout (see FILL_TIMEOUT_MS).
    this.writer =
      redis instanceof Cluster
        ? redis.duplicate([], { redisOptions: { ...redis.options.redisOptions, commandTimeout: FILL_TIMEOUT_MS } })
        : redis.duplicate({ commandTimeout: FILL_TIMEOUT_MS });
    this.writer.on("error", () => {}); // reported by setMany when a command fails
    this.shards = redis instanceof Cluster ? CLUSTER_SHARDS : 1;
    this.writer.defineCommand("fillAssignments", {
      // KEYS: cache keys of one slot; ARGV[1]: ttl; ARGV[2..]: values.
      lua: `for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[i + 1], 'EX', ARGV[1]) end return #KEYS`,
    });
  }

  private readonly writer: Redis | Cluster;

  /** Closes both connections, after the commands already sent. */
  async close(): Promise<void> {
    await Promise.all([this.redis, this.writer].map((r) => r.quit().catch(() => r.disconnect())));
  }

  /** Groups cell indexes by hash tag (one group per slot); the tag string is built once a group. */
  private group(cells: readonly CacheCell[]): Map<string, number[]> {
    // experiment id -> generation * shards + shard -> cell indexes
    const byExperiment = new Map<number, Map<number, number[]>>();
    for (let i = 0; i < cells.length; i++) {
      const c = cells[i]!;
      let inner = byExperiment.get(c.experimentId);
      if (!inner) byExperiment.set(c.experimentId, (inner = new Map()));
      const code = c.generation * this.shards + (this.shards === 1 ? 0 : shardOf(c.unitId));
      const g = inner.get(code);
      if (g) g.push(i);
      else inner.set(code, [i]);
    }
    const groups = new Map<string, number[]>();
    for (const [experimentId, inner] of byExperiment) {
      for (const [code, idx] of inner) {
        const generation = Math.floor(code / this.shards);
        groups.set(`${this.options.prefix}a:{${experimentId}.${generation}.${code % this.shards}}:`, idx);
      }
    }
    return groups;
  }

  async getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]> {
    const out = new Array<StoredAssignment | undefined>(cells.length);
    if (cells.length === 0 || this.redis.status !== "ready" || Date.now() < this.readsResumeAt) return out;
    try {
      await Promise.all(
        [...this.group(cells)].map(async ([tag, idx]) => {
          const values = await this.redis.mget(idx.map((i) => tag + cells[i]!.unitId));
          values.forEach((v, k) => (out[idx[k]!] = v === null ? undefined : decode(v)));
        }),
      );
    } catch (err) {
      this.warn("read", err);
      return new Array(cells.length);
    }
    return out;
  }

  async setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): Promise<void> {
    if (cells.length === 0 || this.writer.status !== "ready" || Date.now() < this.fillsResumeAt) return;
    const fill = (this.writer as unknown as { fillAssignments(...args: (string | number)[]): Promise<number> }).fillAssignments.bind(
      this.writer,
    );
    const calls: Promise<number>[] = [];
    for (const [tag, all] of this.group(cells)) {
      for (let from = 0; from < all.length; from += FILL_CHUNK) {
        const idx = all.slice(from, from + FILL_CHUNK);
        calls.push(
          fill(idx.length, ...idx.map((i) => tag + cells[i]!.unitId), this.options.ttlSeconds, ...idx.map((i) => encode(values[i]!))),
        );
      }
    }
    try {
      await Promise.all(calls);
    } catch (err) {
      this.warn("write", err);
    }
  }

  private warn(what: "read" | "write", err: unknown) {
    const resumeAt = Date.now() + (this.options.pauseAfterFailureMs ?? 1_000);
    this.readsResumeAt = resumeAt;
    if (what === "write") this.fillsResumeAt = resumeAt;
    // One line per burst, not one per call, while Redis is down.
    const now = Date.now();
    if (now - this.warned > 5_000) {
      this.warned = now;
      this.options.log?.(`redis ${what} failed, answering from PostgreSQL: ${(err as Error).message}`);
    }
  }
}

function encode(v: StoredAssignment): string {
  return `${v.variantId}.${v.source}`;
}

function decode(s: string): StoredAssignment | undefined {
  const dot = s.indexOf(".");
  if (dot < 0) return undefined;
  return { variantId: Number(s.slice(0, dot)), source: Number(s.slice(dot + 1)) };
}

/** FNV-1a over UTF-16 code units, mod CLUSTER_SHARDS: cheap and well spread. */
export function shardOf(unitId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < unitId.length; i++) {
    h ^= unitId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % CLUSTER_SHARDS;
}

const CLUSTER_SCHEME = "redis-cluster://";

/**
 * A Redis client that fails fast while disconnected (callers fall back to PostgreSQL) and
 * reconnects by itself. `redis-cluster://host:port,host:port,…` connects to a Redis Cluster
 * through those seed nodes; any other URL to a single Redis.
 */
export function connectRedis(url: string): Redis | Cluster {
  const common = {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A cache read that takes longer than this is slower than asking PostgreSQL.
    commandTimeout: 500,
  };
  if (url.startsWith(CLUSTER_SCHEME)) {
    const nodes = url
      .slice(CLUSTER_SCHEME.length)
      .split(",")
      .map((hp) => {
        const [host, port] = hp.replace(/\/.*$/, "").split(":");
        return { host, port: Number(port || 6379) };
      });
    return new Cluster(nodes, {
      // ioredis's cluster auto-pipelining refuses batches whose keys span slots of one node; our
      // commands each stay in one slot and run concurrently instead.
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      clusterRetryStrategy: (times) => Math.min(100 * times, 2_000),
      redisOptions: { maxRetriesPerRequest: 1, commandTimeout: 500 },
    });
  }
  return new Redis(url, {
    ...common,
    retryStrategy: (times) => Math.min(50 * times, 1_000),
    lazyConnect: false,
  });
}
