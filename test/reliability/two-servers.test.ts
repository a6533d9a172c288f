/**
 * Two server processes on the same PostgreSQL database and the same Redis prefix (README: "several
 * servers may start at once"; SPEC.md: one row per (experiment, unit), every later evaluation
 * answers the stored variant).
 *
 * Two DEDICATED server processes (harness/server-process.ts: startServer on port 0,
 * each its own node process) start at the same time on one fresh database (both run the
 * migrations) and one Redis key prefix. Two clients, one per server, race on the same 10,000 new
 * units of two experiments: each sends every BulkAssign chunk (500 ids) of both experiments,
 * 4 calls in flight, in its own order. Then: exactly one stored row per (experiment, unit) (SQL),
 * identical answers from both servers (equal to the SPEC formula), exactly one NEW per unit across
 * both (the other server answered the row that won, STICKY). A configuration change made through
 * one server (weights, then status) is served by the other within 1 s (polled every 10 ms).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Layer, Reason, columnAnswers, type ColumnAnswer } from "assignment-client";
import { specInRollout, specVariant, sql, storedAssignments, units } from "../grpc/helpers.js";
import { PgDatabase } from "../../src/store/pg-database.js";
import type { ServerProcess } from "../../harness/spawn-server.js";
import { Dedicated } from "../support/dedicated.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";
import { rawClients, shuffled, timeUntil } from "./support/load.js";

const d = new Dedicated();
let db: Awaited<ReturnType<typeof freshDatabase>>;
let prefix: string;
let servers: ServerProcess[] = [];
let clients: ReturnType<typeof rawClients>[] = [];

const EXPERIMENTS = [
  {
    key: "twin-a",
    rollout: 10_000,
    variants: [
      { key: "a", weight: 2500 },
      { key: "b", weight: 2500 },
      { key: "c", weight: 2500 },
      { key: "d", weight: 2500 },
    ],
  },
  {
    key: "twin-b",
    rollout: 6_000,
    variants: [
      { key: "x", weight: 3000 },
      { key: "y", weight: 7000 },
    ],
  },
];
const UNITS = units("twin-", 10_000);
const CHUNK = 500;
const IN_FLIGHT = 4;

const expected = (e: (typeof EXPERIMENTS)[number], u: string) =>
  specInRollout(u, e.key, e.rollout)
    ? { variantKey: specVariant(u, e.key, e.variants), enrolled: true }
    : { variantKey: e.variants[0].key, enrolled: false };

/** Waits (≤ 10 s) until a server's in-memory configuration knows the experiment. */
const knows = (k: number, key: string) =>
  timeUntil(
    async () =>
      (await clients[k].assignments.assign({ experimentKey: key, unitId: "probe", options: { dryRun: true } })).assignment!.reason !==
      Reason.UNKNOWN_EXPERIMENT,
    10_000,
    20,
  );

describe("servers starting at once", () => {
  it("run the migrations of one fresh database concurrently: all four succeed (README: several servers may start at once)", async () => {
    const fresh = await freshDatabase();
    const dbs = Array.from({ length: 4 }, () => new PgDatabase({ url: fresh.url, max: 2 }));
    try {
      const outcomes = await Promise.allSettled(dbs.map((x) => x.migrate()));
      expect(outcomes.map((o) => (o.status === "fulfilled" ? "ok" : String((o as PromiseRejectedResult).reason)))).toEqual([
        "ok",
        "ok",
        "ok",
        "ok",
      ]);
      const [{ n }] = await sql<{ n: number }>(fresh.url, `SELECT count(*)::int AS n FROM schema_migrations`);
      expect(n).toBeGreaterThan(0);
    } finally {
      await Promise.all(dbs.map((x) => x.close()));
      await fresh.drop();
    }
  });
});

describe("two server processes on one database and one Redis prefix", () => {
  beforeAll(async () => {
    db = await freshDatabase();
    prefix = freshRedisPrefix();
    const env = { DATABASE_URL: db.url, REDIS_URL: redisUrl(), REDIS_PREFIX: prefix };
    // Both at once: they race on the migrations too.
    servers = await Promise.all([d.serverProcess("one", env), d.serverProcess("two", env)]);
    clients = servers.map((s) => rawClients(s.address, 60_000));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await d.stopAll();
    await flushPrefix(redisUrl(), prefix);
    await db?.drop();
    expect(d.leftovers()).toEqual([]);
  });

  it("racing on the same 10,000 new units: one stored row per (experiment, unit), identical answers, one NEW each", async () => {
    expect(servers[0].pid).not.toBe(servers[1].pid);
    for (const e of EXPERIMENTS) {
      await clients[0].experiments.createExperiment({
        key: e.key,
        variants: e.variants,
        rollout: e.rollout,
        status: ExperimentStatus.RUNNING,
      });
      expect(await knows(1, e.key)).toBeDefined();
    }

    // Every (experiment, chunk) job, in each caller's own order.
    const jobs = EXPERIMENTS.flatMap((e) => Array.from({ length: UNITS.length / CHUNK }, (_, k) => ({ e, from: k * CHUNK })));
    // The first experiment's chunks in the same order on both (simultaneous INSERTs of the same
    // rows), the second's in another order on server two.
    const half = jobs.length / 2;
    const orderFor = (k: number) => (k === 0 ? [...jobs] : [...jobs.slice(0, half), ...shuffled(jobs.slice(half), 99)]);
    const stickyFrom = { postgres: 0, redis: 0, other: 0 };
    const answers = EXPERIMENTS.map(() => [new Array<ColumnAnswer>(UNITS.length), new Array<ColumnAnswer>(UNITS.length)]);
    const started = Date.now();
    await Promise.all(
      [0, 1].map(async (k) => {
        const queue = orderFor(k);
        await Promise.all(
          Array.from({ length: IN_FLIGHT }, async () => {
            for (let job = queue.shift(); job; job = queue.shift()) {
              const ids = UNITS.slice(job.from, job.from + CHUNK);
              const column = (
                await clients[k].assignments.bulkAssign({ experimentKey: job.e.key, unitIds: ids, options: { explain: true } })
              ).column!;
              const col = columnAnswers(column);
              col.forEach((a, j) => (answers[EXPERIMENTS.indexOf(job.e)][k][job.from + j] = a));
              // A STICKY answer read from PostgreSQL here is an INSERT that lost to the other
              // server's (nothing was stored before the race); from Redis, it came after.
              column.explanations.forEach((x, j) => {
                if (col[j].reason === Reason.STICKY)
                  stickyFrom[x.layer === Layer.POSTGRES ? "postgres" : x.layer === Layer.REDIS ? "redis" : "other"]++;
              });
            }
          }),
        );
      }),
    );
    const raceMs = Date.now() - started;

    const problems: string[] = [];
    const news = [0, 0];
    EXPERIMENTS.forEach((e, x) => {
      UNITS.forEach((u, i) => {
        const [one, two] = [answers[x][0][i], answers[x][1][i]];
        const want = expected(e, u);
        for (const a of [one, two]) {
          if (!a || a.variantKey !== want.variantKey || a.enrolled !== want.enrolled || a.stored !== want.enrolled) {
            problems.push(`${e.key}/${u}: ${JSON.stringify(a)} vs ${JSON.stringify(want)}`);
          }
        }
        if (want.enrolled) {
          const reasons = [one.reason, two.reason].sort();
          if (reasons[0] !== Reason.STICKY || reasons[1] !== Reason.NEW) {
            if (reasons[0] !== Reason.NEW || reasons[1] !== Reason.STICKY)
              problems.push(`${e.key}/${u}: reasons ${reasons.map((r) => Reason[r])}, want one NEW and one STICKY`);
          }
          if (one.reason === Reason.NEW) news[0]++;
          if (two.reason === Reason.NEW) news[1]++;
        } else if (one.reason !== Reason.NOT_IN_ROLLOUT || two.reason !== Reason.NOT_IN_ROLLOUT) {
          problems.push(`${e.key}/${u}: not in the rollout, reasons ${Reason[one.reason]}, ${Reason[two.reason]}`);
        }
      });
    });
    expect(problems.slice(0, 10), `${problems.length} problems`).toEqual([]);

    // Exactly one stored row per (experiment, unit), with the SPEC variant.
    const dup = await sql<{ n: number }>(
      db.url,
      `SELECT count(*)::int AS n FROM (SELECT experiment_id, unit_id FROM assignments GROUP BY 1, 2 HAVING count(*) > 1) d`,
    );
    expect(dup[0].n).toBe(0);
    for (const e of EXPERIMENTS) {
      const stored = await storedAssignments(db.url, e.key);
      const enrolled = UNITS.filter((u) => expected(e, u).enrolled);
      expect(stored.size).toBe(enrolled.length);
      expect(enrolled.filter((u) => stored.get(u)?.variant !== expected(e, u).variantKey)).toEqual([]);
    }
    const [{ rows }] = await sql<{ rows: number }>(db.url, `SELECT count(*)::int AS rows FROM assignments`);
    console.info(
      `two servers racing: 2 x ${jobs.length} BulkAssign calls of ${CHUNK} ids (${IN_FLIGHT} in flight per server) on the same ` +
        `${UNITS.length} units x ${EXPERIMENTS.length} experiments in ${raceMs} ms; ${rows} rows stored, none twice; ` +
        `NEW answered by server one ${news[0]}, by server two ${news[1]}; the other answers STICKY: ${stickyFrom.postgres} ` +
        `from an INSERT that lost the race (layer POSTGRES), ${stickyFrom.redis} from Redis, ${stickyFrom.other} otherwise`,
    );
    // The INSERTs really collided: some units were written by both servers at once.
    expect(stickyFrom.postgres).toBeGreaterThan(0);
    // Both servers really raced: each won some units.
    expect(news[0]).toBeGreaterThan(0);
    expect(news[1]).toBeGreaterThan(0);
  });

  it("a configuration change made through one server is served by the other within 1 s", async () => {
    const [e, f] = EXPERIMENTS;
    const sample = UNITS.slice(0, 2_000);
    const stickyBefore = columnAnswers((await clients[1].assignments.bulkAssign({ experimentKey: e.key, unitIds: sample })).column!);

    // Weights, through server one; polled on server two with new units.
    const cur = (await clients[0].experiments.getExperiment({ key: e.key })).experiment!;
    const weights = [
      { key: "a", weight: 0 },
      { key: "b", weight: 0 },
      { key: "c", weight: 0 },
      { key: "d", weight: 10_000 },
    ];
    const updated = (await clients[0].experiments.updateExperiment({ key: e.key, version: cur.version, variants: { variants: weights } }))
      .experiment!;
    const weightMs = await timeUntil(
      async () => {
        const a = (
          await clients[1].assignments.assign({ experimentKey: e.key, unitId: `fresh-${Math.random()}`, options: { dryRun: true } })
        ).assignment!;
        return a.experimentVersion === updated.version && a.variantKey === "d";
      },
      1_000,
      10,
    );

    // Status, through server two; polled on server one.
    const curF = (await clients[1].experiments.getExperiment({ key: f.key })).experiment!;
    await clients[1].experiments.updateExperiment({ key: f.key, version: curF.version, status: ExperimentStatus.PAUSED });
    const fresh = units("fresh-in-rollout-", 200).filter((u) => specInRollout(u, f.key, f.rollout))[0];
    const statusMs = await timeUntil(
      async () =>
        (await clients[0].assignments.assign({ experimentKey: f.key, unitId: fresh, options: { dryRun: true } })).assignment!.reason ===
        Reason.PAUSED,
      1_000,
      10,
    );

    console.info(
      `two servers: a weight change through server one was served by server two after ${weightMs} ms; a pause through server two by server one after ${statusMs} ms`,
    );
    expect(weightMs, "weights served by the other server within 1 s").toBeDefined();
    expect(weightMs!).toBeLessThan(1_000);
    expect(statusMs, "status served by the other server within 1 s").toBeDefined();
    expect(statusMs!).toBeLessThan(1_000);

    // Stored units kept their variants on both servers (the weight change moved nobody).
    for (const k of [0, 1]) {
      const after = columnAnswers((await clients[k].assignments.bulkAssign({ experimentKey: e.key, unitIds: sample })).column!);
      expect(after.map((a) => a.variantKey)).toEqual(stickyBefore.map((a) => a.variantKey));
      expect(new Set(after.map((a) => a.reason))).toEqual(new Set([Reason.STICKY]));
    }
    // Paused: stored units keep answering STICKY on both servers, new ones get the default.
    const enrolledF = UNITS.filter((u) => specInRollout(u, f.key, f.rollout)).slice(0, 500);
    for (const k of [0, 1]) {
      const col = columnAnswers(
        (await clients[k].assignments.bulkAssign({ experimentKey: f.key, unitIds: [...enrolledF, fresh] })).column!,
      );
      expect(col.slice(0, -1).map((a) => [a.reason, a.variantKey])).toEqual(
        enrolledF.map((u) => [Reason.STICKY, specVariant(u, f.key, f.variants)]),
      );
      expect([col.at(-1)!.reason, col.at(-1)!.variantKey]).toEqual([Reason.PAUSED, "x"]);
    }
  });

  it("both processes shut down gracefully (SIGTERM, exit code 0)", async () => {
    for (const c of clients) c.close();
    const exits = await Promise.all(servers.map((s) => s.stop()));
    expect(exits).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
  });
});
