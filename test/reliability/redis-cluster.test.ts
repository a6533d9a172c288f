/**
 * A real Redis Cluster (README: `redis-cluster://host:port,host:port` connects to a Redis Cluster
 * through those seed nodes; src/cache/redis-cache.ts spreads each experiment over 16 hash slots).
 *
 * Three DEDICATED redis-server processes (`--cluster-enabled yes`, each on its own free port and
 * cluster bus port, in its own temp folder with its nodes.conf) are joined by
 * `redis-cli --cluster create … --cluster-replicas 0` into a three-master cluster. One server uses
 * it (seeded with two of the three nodes), another a DEDICATED single redis-server; both keep no
 * in-process cache (memoryCacheEntries: 0) and have their own fresh database with the same
 * experiments. The same 5,000 units of three experiments (plain, partial rollout, namespaced) get
 * the same answers from both, equal to the SPEC formula; read again they come from layer REDIS on
 * both; the cluster holds keys on each of its three masters, exactly one per stored assignment.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExperimentStatus,
  Layer,
  Reason,
  columnAnswers,
  type Client,
  type AssignmentService,
  type ExperimentService,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { specInRollout, specVariant, sql, units } from "../grpc/helpers.js";
import type { RedisServer } from "../../harness/redis-server.js";
import { Dedicated } from "../support/dedicated.js";
import { freshDatabase } from "../support/services.js";
import { rawClients, timeUntil } from "./support/load.js";

const d = new Dedicated();
let cluster: { nodes: RedisServer[]; url: string };
let single: RedisServer;
const dbs: Awaited<ReturnType<typeof freshDatabase>>[] = [];
const servers: RunningServer[] = [];
const clients: ReturnType<typeof rawClients>[] = [];
const PREFIX = "rc:";

beforeAll(async () => {
  cluster = await d.redisCluster(3);
  single = await d.redis({ name: "single-redis" });
  const seeds = `redis-cluster://${cluster.nodes
    .slice(0, 2)
    .map((n) => `127.0.0.1:${n.port}`)
    .join(",")}`;
  for (const redisUrl of [seeds, single.url]) {
    const db = await freshDatabase();
    dbs.push(db);
    const s = await startServer({
      databaseUrl: db.url,
      redisUrl,
      redisPrefix: PREFIX,
      port: 0,
      memoryCacheEntries: 0,
      logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    });
    servers.push(s);
    d.own(`server on ${redisUrl}`, () => s.close());
    clients.push(rawClients(s.address));
  }
});
afterAll(async () => {
  for (const c of clients) c.close();
  await d.stopAll();
  for (const db of dbs) await db.drop();
  expect(d.leftovers()).toEqual([]);
});

const variants3 = [
  { key: "a", weight: 2000 },
  { key: "b", weight: 3000 },
  { key: "c", weight: 5000 },
];
const EXPERIMENTS = [
  { key: "cl-plain", variants: variants3, rollout: 10_000 },
  { key: "cl-rollout", variants: variants3, rollout: 4_000 },
  { key: "cl-ns", variants: variants3, rollout: 10_000 },
];
const UNITS = units("cl-u-", 5_000);

async function setUp(c: { experiments: Client<typeof ExperimentService> }) {
  for (const e of EXPERIMENTS)
    await c.experiments.createExperiment({ key: e.key, variants: e.variants, rollout: e.rollout, status: ExperimentStatus.RUNNING });
  await c.experiments.createNamespace({ key: "cl-space", segments: 1_000 });
  await c.experiments.allocateSegments({ namespaceKey: "cl-space", experimentKey: "cl-ns", segments: 500 });
}

const answersOf = async (c: { assignments: Client<typeof AssignmentService> }, key: string, explain = false) =>
  (await c.assignments.bulkAssign({ experimentKey: key, unitIds: UNITS, options: { explain } })).column!;

describe("a three-master Redis Cluster", () => {
  it("is up: three masters, every slot served", async () => {
    const info = await cluster.nodes[0].cliAsync("cluster", "info");
    expect(info).toMatch(/cluster_state:ok/);
    expect(info).toMatch(/cluster_slots_assigned:16384/);
    expect(info).toMatch(/cluster_known_nodes:3/);
    const masters = (await cluster.nodes[0].cliAsync("cluster", "nodes"))
      .trim()
      .split("\n")
      .filter((l) => l.includes("master"));
    expect(masters.length).toBe(3);
    expect(servers.map((s) => s.cacheKind)).toEqual(["redis", "redis"]);
  });

  it("answers like a server on a single Redis: same variants and reasons, equal to the SPEC; then from layer REDIS", async () => {
    for (const c of clients) await setUp(c);
    let stored = 0;
    for (const e of EXPERIMENTS) {
      const [onCluster, onSingle] = await Promise.all(clients.map((c) => answersOf(c, e.key)));
      const a = columnAnswers(onCluster);
      const b = columnAnswers(onSingle);
      expect(a).toEqual(b);
      UNITS.forEach((u, i) => {
        if (e.key === "cl-ns") return; // segments: checked through the reasons below
        const inRollout = specInRollout(u, e.key, e.rollout);
        const want = inRollout ? [specVariant(u, e.key, e.variants), Reason.NEW] : ["a", Reason.NOT_IN_ROLLOUT];
        if (a[i].variantKey !== want[0] || a[i].reason !== want[1]) throw new Error(`${e.key}/${u}: ${JSON.stringify(a[i])}, want ${want}`);
      });
      const reasons = new Set(a.map((x) => x.reason));
      if (e.key === "cl-ns") expect(reasons).toEqual(new Set([Reason.NEW, Reason.NOT_IN_NAMESPACE]));
      stored += a.filter((x) => x.stored).length;
    }

    // Read again: STICKY, the same variants, from Redis on both (filled off the reply path: polled,
    // at most 10 s).
    const layerOk = await timeUntil(
      async () => {
        for (const c of clients) {
          for (const e of EXPERIMENTS) {
            const col = await answersOf(c, e.key, true);
            const ok = columnAnswers(col).every((x, i) =>
              x.stored
                ? x.reason === Reason.STICKY && col.explanations[i].layer === Layer.REDIS
                : col.explanations[i].layer === Layer.COMPUTED,
            );
            if (!ok) return false;
          }
        }
        return true;
      },
      10_000,
      100,
    );
    expect(layerOk, "every stored answer comes from Redis on both servers").toBeDefined();
    for (const e of EXPERIMENTS) {
      const [x, y] = await Promise.all(clients.map(async (c) => columnAnswers(await answersOf(c, e.key))));
      expect(x).toEqual(y);
    }

    // The cluster holds the cache on all three masters: one key per stored assignment.
    const perMaster = await Promise.all(cluster.nodes.map(async (n) => Number((await n.cliAsync("dbsize")).trim())));
    const [{ rows }] = await sql<{ rows: number }>(dbs[0].url, `SELECT count(*)::int AS rows FROM assignments`);
    const singleKeys = Number((await single.cliAsync("dbsize")).trim());
    console.info(
      `redis cluster: ${UNITS.length} units x ${EXPERIMENTS.length} experiments, ${stored} stored; keys per master ${JSON.stringify(perMaster)} ` +
        `(sum ${perMaster.reduce((p, q) => p + q, 0)}), single Redis ${singleKeys}, rows ${rows}`,
    );
    expect(rows).toBe(stored);
    for (const n of perMaster) expect(n).toBeGreaterThan(0);
    expect(perMaster.reduce((p, q) => p + q, 0)).toBe(stored);
    expect(singleKeys).toBe(stored);
    // Each experiment's keys spread over 16 hash tags (shards) on the cluster.
    const tags = new Set<string>();
    for (const n of cluster.nodes) {
      let cursor = "0";
      for (let k = 0; k < 10_000; k++) {
        const out = (await n.cliAsync("scan", cursor, "match", `${PREFIX}*`, "count", "1000")).trim().split("\n");
        cursor = out[0];
        for (const key of out.slice(1)) tags.add(/\{([^}]*)\}/.exec(key)?.[1] ?? "?");
        if (cursor === "0") break;
      }
    }
    expect(tags.size).toBe(EXPERIMENTS.length * 16);
  });
});
