/**
 * Redis stopped during load (README: the Redis client "fails fast while disconnected (callers
 * fall back to PostgreSQL) and reconnects by itself").
 *
 * A DEDICATED redis-server (its own process, port and folder) serves one server running in this
 * process with its in-process cache turned off (memoryCacheEntries: 0), so every stored answer is
 * read from Redis or PostgreSQL and `explain` shows which. Four clients assign a fixed set of
 * 2,000 units of two experiments in a loop (Assign and BulkAssign of 250 ids). Then:
 *
 * 1. Redis is killed (SIGKILL) mid-load: every call still succeeds with the same answers as before
 *    the fault, now from PostgreSQL; an override set meanwhile changes one unit's stored value.
 *    redis-server is started again on the same port, from the snapshot it saved before dying: the
 *    server uses it again by itself (answers from layer REDIS), and the overridden unit is never
 *    answered from the snapshot's stale entry.
 * 2. Redis hangs (SIGSTOP: connections open, nothing answered) for 4.5 s mid-load: calls wait
 *    out the client's command timeout, then answer from PostgreSQL, the same answers; after
 *    SIGCONT the cache is used again.
 *
 * Nothing is lost: every answer equals the one before the fault (and the SPEC formula), and the
 * stored rows (SQL) are exactly the units enrolled before the load, with the same variants.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Layer, Reason, Source, columnAnswers, type AssignmentColumn } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { specInRollout, specVariant, storedAssignments, units } from "../grpc/helpers.js";
import type { RedisServer } from "../../harness/redis-server.js";
import { Dedicated } from "../support/dedicated.js";
import { freshDatabase, freshRedisPrefix } from "../support/services.js";
import { codeName, codeOf, Mismatches, percentiles, rawClients, rng, sleep, startLoad, timeUntil } from "./support/load.js";

const d = new Dedicated();
let redis: RedisServer;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let server: RunningServer;
let c: ReturnType<typeof rawClients>;

beforeAll(async () => {
  redis = await d.redis({ name: "redis-outage" });
  db = await freshDatabase();
  server = await startServer({
    databaseUrl: db.url,
    redisUrl: redis.url,
    redisPrefix: freshRedisPrefix(),
    port: 0,
    memoryCacheEntries: 0,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
  });
  d.own("server", () => server.close());
  c = rawClients(server.address);
});
afterAll(async () => {
  c?.close();
  await d.stopAll();
  await db?.drop();
  expect(d.leftovers()).toEqual([]);
});

const A = {
  key: "cache-a",
  variants: [
    { key: "a", weight: 5000 },
    { key: "b", weight: 5000 },
  ],
  rollout: 10_000,
};
const B = {
  key: "cache-b",
  variants: [
    { key: "x", weight: 2000 },
    { key: "y", weight: 3000 },
    { key: "z", weight: 5000 },
  ],
  rollout: 7_000,
};
const EXPERIMENTS = [A, B];
const UNITS = units("ru-", 2_000);
const WORKERS = 4;
const BULK = 250;

/** What SPEC.md says a unit gets (salt = key): the hashed variant when in the rollout, else the
 * default (first) variant, not enrolled. */
function expected(e: typeof A, u: string): { variant: string; enrolled: boolean } {
  return specInRollout(u, e.key, e.rollout)
    ? { variant: specVariant(u, e.key, e.variants), enrolled: true }
    : { variant: e.variants[0].key, enrolled: false };
}

interface CallRecord {
  start: number;
  end: number;
  cells: number;
  layers: Partial<Record<Layer, number>>;
}

/**
 * Runs the fixed-unit load while `fault` happens, then `heal`, then waits until the server
 * answers from Redis again. Checks every answer against the SPEC (equal to the answers before the
 * fault, which were checked the same way) and returns what happened when.
 */
async function underLoad(
  fault: () => Promise<void>,
  heal: () => Promise<void>,
  outageMs: number,
  midOutage: () => Promise<void> = async () => {},
) {
  const calls: CallRecord[] = [];
  const errors: string[] = [];
  const wrong = new Mismatches();
  const check = (e: typeof A, u: string, got: { variantKey: string; reason: Reason; stored: boolean }) => {
    const x = expected(e, u);
    const want = x.enrolled
      ? { variantKey: x.variant, reason: Reason.STICKY, stored: true }
      : { variantKey: x.variant, reason: Reason.NOT_IN_ROLLOUT, stored: false };
    if (got.variantKey !== want.variantKey || got.reason !== want.reason || got.stored !== want.stored) {
      wrong.add(`${e.key}/${u}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  };
  const randoms = Array.from({ length: WORKERS }, (_, w) => rng(1000 + w));
  const load = startLoad(WORKERS, { maxIterationsPerWorker: 20_000, maxMs: 40_000 }, async (w, i) => {
    const next = randoms[w];
    const e = EXPERIMENTS[i % 2];
    const start = Date.now();
    const layers: CallRecord["layers"] = {};
    const seen = (l: Layer) => (layers[l] = (layers[l] ?? 0) + 1);
    try {
      if (i % 3 === 0) {
        const u = UNITS[Math.floor(next() * UNITS.length)];
        const a = (await c.assignments.assign({ experimentKey: e.key, unitId: u, options: { explain: true } })).assignment!;
        check(e, u, a);
        seen(a.explanation!.layer);
        calls.push({ start, end: Date.now(), cells: 1, layers });
      } else {
        const from = Math.floor(next() * (UNITS.length - BULK));
        const ids = UNITS.slice(from, from + BULK);
        const col: AssignmentColumn = (await c.assignments.bulkAssign({ experimentKey: e.key, unitIds: ids, options: { explain: true } }))
          .column!;
        columnAnswers(col).forEach((a, k) => check(e, ids[k], a));
        col.explanations.forEach((x) => seen(x.layer));
        calls.push({ start, end: Date.now(), cells: ids.length, layers });
      }
    } catch (err) {
      errors.push(`${codeName(codeOf(err))}: ${(err as Error).message}`);
    }
  });

  await sleep(1_500);
  const faultStart = Date.now();
  await fault();
  const faultAt = Date.now();
  await sleep(500);
  await midOutage();
  await sleep(outageMs - 500);
  const healStart = Date.now();
  await heal();
  // The server uses Redis again by itself: a unit read twice is answered from layer REDIS the
  // second time (the first read refills the entry if the restarted Redis lacks it).
  const probe = UNITS.slice(0, 20);
  const backAfterMs = await timeUntil(
    async () => {
      for (const e of EXPERIMENTS) {
        await c.assignments.bulkAssign({ experimentKey: e.key, unitIds: probe });
        const col = (await c.assignments.bulkAssign({ experimentKey: e.key, unitIds: probe, options: { explain: true } })).column!;
        if (!col.explanations.every((x, k) => x.layer === (expected(e, probe[k]).enrolled ? Layer.REDIS : Layer.COMPUTED))) return false;
      }
      return true;
    },
    15_000,
    50,
  );
  const recoveredAt = Date.now();
  await sleep(1_000);
  const result = await load.stop();

  // Strictly inside: Date.now() counts milliseconds, and a call that started in the millisecond
  // of the fault may have started (and been answered by Redis) just before it; one that ended in
  // the millisecond of the heal may have been answered just after it.
  const window = (from: number, to: number) => calls.filter((r) => r.start > from && r.end < to);
  const sum = (rs: CallRecord[], l: Layer) => rs.reduce((a, r) => a + (r.layers[l] ?? 0), 0);
  const before = window(0, faultStart);
  const outage = window(faultAt, healStart);
  const after = window(recoveredAt, Number.MAX_SAFE_INTEGER);
  const describe = (rs: CallRecord[]) => ({
    calls: rs.length,
    cells: rs.reduce((a, r) => a + r.cells, 0),
    layers: {
      memory: sum(rs, Layer.MEMORY),
      redis: sum(rs, Layer.REDIS),
      postgres: sum(rs, Layer.POSTGRES),
      computed: sum(rs, Layer.COMPUTED),
    },
    latencyMs: percentiles(rs.map((r) => r.end - r.start)),
  });
  return {
    result,
    errors,
    wrong,
    backAfterMs,
    outageMs: healStart - faultStart,
    before: describe(before),
    outage: describe(outage),
    after: describe(after),
    total: describe(calls),
  };
}

describe("Redis stopped or hung during load", () => {
  it("before the faults: every enrolled unit is stored, and read back from Redis", async () => {
    for (const e of EXPERIMENTS) {
      await c.experiments.createExperiment({ key: e.key, variants: e.variants, rollout: e.rollout, status: ExperimentStatus.RUNNING });
      const col = columnAnswers((await c.assignments.bulkAssign({ experimentKey: e.key, unitIds: UNITS })).column!);
      UNITS.forEach((u, k) => {
        const x = expected(e, u);
        expect([col[k].variantKey, col[k].reason, col[k].stored], u).toEqual([
          x.variant,
          x.enrolled ? Reason.NEW : Reason.NOT_IN_ROLLOUT,
          x.enrolled,
        ]);
      });
    }
    // Redis is filled off the reply path: wait (bounded) until every stored unit comes from it.
    const tookMs = await timeUntil(
      async () => {
        for (const e of EXPERIMENTS) {
          const col = (await c.assignments.bulkAssign({ experimentKey: e.key, unitIds: UNITS, options: { explain: true } })).column!;
          if (!col.explanations.every((x, k) => x.layer === (expected(e, UNITS[k]).enrolled ? Layer.REDIS : Layer.COMPUTED))) return false;
        }
        return true;
      },
      10_000,
      50,
    );
    expect(tookMs, "every stored unit answered from Redis").toBeDefined();
    // The unit whose stored value changes while Redis is away: enrolled, stored, cached.
    const ovr = units("ovr-", 50).find((u) => expected(B, u).enrolled)!;
    const a = (await c.assignments.assign({ experimentKey: B.key, unitId: ovr })).assignment!;
    expect([a.reason, a.variantKey]).toEqual([Reason.NEW, specVariant(ovr, B.key, B.variants)]);
    expect(
      await timeUntil(
        async () =>
          (await c.assignments.assign({ experimentKey: B.key, unitId: ovr, options: { explain: true } })).assignment!.explanation!.layer ===
          Layer.REDIS,
        5_000,
      ),
    ).toBeDefined();
  });

  it("killed (SIGKILL) mid-load and restarted on the same port: same answers throughout, from PostgreSQL, then from Redis again", async () => {
    const ovr = units("ovr-", 50).find((u) => expected(B, u).enrolled)!;
    const before = specVariant(ovr, B.key, B.variants);
    const forced = B.variants.find((v) => v.key !== before)!.key;
    const pidBefore = redis.pid;
    const r = await underLoad(
      async () => {
        // A snapshot of the cache as it is (the entry of `ovr` included), which the restarted
        // redis-server loads: the stale-entry trap.
        await redis.cliAsync("SAVE");
        await redis.kill("SIGKILL");
      },
      () => redis.start(),
      2_500,
      async () => {
        // While Redis is away, the stored value of one unit changes.
        const o = await c.experiments.setOverrides({ experimentKey: B.key, overrides: [{ unitId: ovr, variantKey: forced }] });
        expect(o.count).toBe(1);
      },
    );
    console.info(
      `redis killed under load: ${WORKERS} clients, ${r.total.calls} calls / ${r.total.cells} answers in ${r.result.elapsedMs} ms; ` +
        `outage ${r.outageMs} ms: ${JSON.stringify(r.outage)}; before: ${JSON.stringify(r.before)}; after: ${JSON.stringify(r.after)}; ` +
        `cache used again ${r.backAfterMs} ms after redis-server was back`,
    );
    expect(redis.pid).not.toBe(pidBefore);
    expect(r.errors, "no call failed").toEqual([]);
    expect(r.wrong.first, `${r.wrong.count} wrong answers`).toEqual([]);
    expect(r.result.endedBy.every((x) => x === "stopped")).toBe(true);
    // The load ran before, during and after the outage…
    for (const phase of [r.before, r.outage, r.after]) expect(phase.calls).toBeGreaterThan(0);
    // …and while Redis was dead, no answer came from it; stored answers came from PostgreSQL.
    expect(r.before.layers.redis).toBeGreaterThan(0);
    expect(r.outage.layers.redis).toBe(0);
    expect(r.outage.layers.postgres).toBeGreaterThan(0);
    // After the restart the same server (never restarted) reads Redis again.
    expect(r.backAfterMs, "server used Redis again within 15 s").toBeDefined();
    expect(r.after.layers.redis).toBeGreaterThan(0);

    // The overridden unit: the restarted Redis holds its old entry (from the snapshot), which is
    // never answered; the override is, every time.
    for (let k = 0; k < 3; k++) {
      const a = (await c.assignments.assign({ experimentKey: B.key, unitId: ovr, options: { explain: true } })).assignment!;
      expect([a.reason, a.variantKey, a.stored]).toEqual([Reason.OVERRIDE, forced, true]);
    }
    const col = columnAnswers((await c.assignments.bulkAssign({ experimentKey: B.key, unitIds: [ovr, UNITS[0]] })).column!);
    expect([col[0].reason, col[0].variantKey]).toEqual([Reason.OVERRIDE, forced]);
  });

  it("hung (SIGSTOP) mid-load: calls answer from PostgreSQL after the Redis timeout, the same answers; after SIGCONT Redis is used again", async () => {
    const r = await underLoad(
      async () => redis.pause(),
      async () => redis.resume(),
      // Every call waits out the Redis timeout (1 s) while it hangs: long enough for each client
      // to complete calls inside the window.
      4_500,
    );
    console.info(
      `redis hung under load: ${WORKERS} clients, ${r.total.calls} calls / ${r.total.cells} answers in ${r.result.elapsedMs} ms; ` +
        `hang ${r.outageMs} ms: ${JSON.stringify(r.outage)}; before: ${JSON.stringify(r.before)}; after: ${JSON.stringify(r.after)}; ` +
        `cache used again ${r.backAfterMs} ms after SIGCONT`,
    );
    expect(r.errors, "no call failed").toEqual([]);
    expect(r.wrong.first, `${r.wrong.count} wrong answers`).toEqual([]);
    for (const phase of [r.before, r.outage, r.after]) expect(phase.calls).toBeGreaterThan(0);
    expect(r.outage.layers.redis).toBe(0);
    expect(r.outage.layers.postgres).toBeGreaterThan(0);
    expect(r.backAfterMs, "server used Redis again within 15 s").toBeDefined();
    expect(r.after.layers.redis).toBeGreaterThan(0);
  });

  it("nothing was lost or added: the stored rows are exactly the enrolled units, with their variants", async () => {
    const ovr = units("ovr-", 50).find((u) => expected(B, u).enrolled)!;
    for (const e of EXPERIMENTS) {
      const stored = await storedAssignments(db.url, e.key);
      const want = new Map(UNITS.filter((u) => expected(e, u).enrolled).map((u) => [u, expected(e, u).variant]));
      // The overridden unit was stored by hashing before its override, which is kept apart
      // (SPEC.md "Stored assignments"): its stored row is the hashed one still.
      if (e === B) want.set(ovr, specVariant(ovr, B.key, B.variants));
      expect(stored.size).toBe(want.size);
      const wrong = [...want].filter(([u, v]) => stored.get(u)?.variant !== v || stored.get(u)?.source !== Source.HASH);
      expect(wrong).toEqual([]);
    }
    expect(Number(await redis.cliAsync("DBSIZE"))).toBeGreaterThan(0);
  });
});
