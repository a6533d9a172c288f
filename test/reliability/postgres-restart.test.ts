/**
 * PostgreSQL restarted during load (SPEC.md "Stored assignments": if the store cannot be reached, a
 * call fails with UNAVAILABLE, unless it allows unstored answers; then it gets the hashed variant
 * with stored = false; rule 9: a NEW answer is stored before it is sent).
 *
 * A DEDICATED PostgreSQL (initdb in a temp folder, its own port) is the only store of a server
 * running in this process, with no Redis and its in-process cache off (memoryCacheEntries: 0), so
 * every call needs PostgreSQL. The experiment's weights were changed after 1,000 "old" units were
 * stored, so a sticky answer (old weights) and a freshly hashed one (new weights) differ for many
 * units and a wrong source of truth shows. Four clients loop: BulkAssign of 100 old + 100 new
 * units (every second call with allow_unstored), Assign of a new unit, GetExperiment. PostgreSQL
 * is stopped twice under that load, `pg_ctl stop -m fast` then `-m immediate` (a crash: recovery
 * on start), each time down for 2 s, then started again.
 *
 * Every answer is checked: stored = true answers the unit's sticky variant (old units: old
 * weights; new units: new weights), stored = false (only with allow_unstored) the SPEC-hashed
 * variant under the current weights; a failed call is UNAVAILABLE, never INTERNAL or anything
 * else. The server recovers by itself (polled, bounded). Nothing acknowledged is lost: every unit
 * answered stored = true is in the database afterwards with that variant (after a crash too), and
 * every row in the database holds the unit's sticky variant.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers, type ColumnAnswer } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { specVariant, storedAssignments, units } from "../grpc/helpers.js";
import type { PostgresServer } from "../../harness/postgres-server.js";
import { Dedicated } from "../support/dedicated.js";
import { codeName, codeOf, Mismatches, rawClients, rng, sleep, startLoad, status, timeUntil } from "./support/load.js";

const d = new Dedicated();
let pg: PostgresServer;
let server: RunningServer;
let c: ReturnType<typeof rawClients>;

beforeAll(async () => {
  pg = await d.postgres();
  server = await startServer({
    databaseUrl: pg.url,
    port: 0,
    memoryCacheEntries: 0,
    databasePoolSize: 10,
    // The periodic configuration check is slowed down so that the last test sees LISTEN/NOTIFY
    // itself working again after the restarts, not the fallback.
    configCheckMs: 30_000,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
  });
  d.own("server", () => server.close());
  c = rawClients(server.address, 20_000);
});
afterAll(async () => {
  c?.close();
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

const KEY = "pg-restart";
const W1 = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const W2 = [
  { key: "a", weight: 1000 },
  { key: "b", weight: 9000 },
];
const OLD = units("old-", 1_000);
const WORKERS = 4;
const isOld = (u: string) => u.startsWith("old-");
/** The variant stored for a unit: old units were stored under W1, every other under W2. */
const sticky = (u: string) => specVariant(u, KEY, isOld(u) ? W1 : W2);
/** What hashing answers now (W2), for unstored answers. */
const hashedNow = (u: string) => specVariant(u, KEY, W2);

describe("PostgreSQL restarted under load", () => {
  it("answers are right or UNAVAILABLE, never INTERNAL; the server recovers by itself; nothing acknowledged is lost", async () => {
    const created = (await c.experiments.createExperiment({ key: KEY, variants: W1, status: ExperimentStatus.RUNNING })).experiment!;
    const first = columnAnswers((await c.assignments.bulkAssign({ experimentKey: KEY, unitIds: OLD })).column!);
    OLD.forEach((u, k) => expect([first[k].variantKey, first[k].reason], u).toEqual([specVariant(u, KEY, W1), Reason.NEW]));
    await c.experiments.updateExperiment({ key: KEY, version: created.version, variants: { variants: W2 } });
    const differ = OLD.filter((u) => specVariant(u, KEY, W1) !== specVariant(u, KEY, W2)).length;
    expect(differ).toBeGreaterThan(300); // the two truths really differ for many units

    /** unit -> variant of every answer with stored = true (acknowledged as stored). */
    const acknowledged = new Map<string, string>();
    const wrong = new Mismatches();
    const codes = new Map<string, number>();
    const count = (name: string) => codes.set(name, (codes.get(name) ?? 0) + 1);
    let unstoredAnswers = 0;
    let answers = 0;
    let phase = "before";
    const byPhase = new Map<string, { ok: number; unavailable: number; unstored: number }>();
    /** Counted in the phase the call started in. */
    const tally = (at: string, k: "ok" | "unavailable" | "unstored", n = 1) => {
      const p = byPhase.get(at) ?? byPhase.set(at, { ok: 0, unavailable: 0, unstored: 0 }).get(at)!;
      p[k] += n;
    };
    const check = (at: string, u: string, a: ColumnAnswer, allowUnstored: boolean) => {
      answers++;
      if (a.stored) {
        const want = sticky(u);
        if (a.variantKey !== want || ![Reason.NEW, Reason.STICKY].includes(a.reason) || (a.reason === Reason.NEW) === isOld(u)) {
          wrong.add(`${u}: stored answer ${JSON.stringify(a)}, sticky variant ${want}`);
        }
        const prev = acknowledged.get(u);
        if (prev !== undefined && prev !== a.variantKey) wrong.add(`${u}: stored answers ${prev} then ${a.variantKey}`);
        acknowledged.set(u, a.variantKey);
      } else {
        unstoredAnswers++;
        tally(at, "unstored");
        if (!allowUnstored) wrong.add(`${u}: stored = false without allow_unstored: ${JSON.stringify(a)}`);
        if (a.variantKey !== hashedNow(u) || a.reason !== Reason.NEW)
          wrong.add(`${u}: unstored answer ${JSON.stringify(a)}, hashed variant ${hashedNow(u)}`);
      }
    };
    const failed = (at: string, err: unknown) => {
      const name = codeName(codeOf(err));
      count(name);
      if (codeOf(err) === status.UNAVAILABLE) tally(at, "unavailable");
      else wrong.add(`a call failed with ${name}: ${(err as Error).message}`);
    };

    const randoms = Array.from({ length: WORKERS }, (_, w) => rng(7 + w));
    const load = startLoad(WORKERS, { maxIterationsPerWorker: 5_000, maxMs: 60_000 }, async (w, i) => {
      const next = randoms[w];
      const allowUnstored = i % 2 === 1;
      const from = Math.floor(next() * (OLD.length - 100));
      const ids = [...OLD.slice(from, from + 100), ...units(`new-${w}-${i}-`, 100)];
      let at = phase;
      try {
        const col = columnAnswers(
          (await c.assignments.bulkAssign({ experimentKey: KEY, unitIds: ids, options: { allowUnstored } })).column!,
        );
        ids.forEach((u, k) => check(at, u, col[k], allowUnstored));
        tally(at, "ok");
        count("OK");
      } catch (err) {
        failed(at, err);
      }
      at = phase;
      try {
        const u = `single-${w}-${i}`;
        const a = (await c.assignments.assign({ experimentKey: KEY, unitId: u, options: { allowUnstored } })).assignment!;
        check(at, u, a, allowUnstored);
        tally(at, "ok");
        count("OK");
      } catch (err) {
        failed(at, err);
      }
      if (i % 5 === 0) {
        try {
          expect((await c.experiments.getExperiment({ key: KEY })).experiment!.variants.map((v) => v.weight)).toEqual([1000, 9000]);
          count("OK");
        } catch (err) {
          failed(phase, err);
        }
      }
    });

    /** The server stores new units again: polled every 50 ms, at most 30 s. */
    const recovery = () =>
      timeUntil(
        async () => {
          const u = `probe-${Date.now()}-${Math.random()}`;
          const a = (await c.assignments.assign({ experimentKey: KEY, unitId: u })).assignment!;
          return a.stored && a.variantKey === hashedNow(u);
        },
        30_000,
        50,
      );

    const outages: Array<{ mode: string; downMs: number; recoveredMs: number | undefined }> = [];
    for (const mode of ["fast", "immediate"] as const) {
      phase = `before ${mode}`;
      await sleep(1_500);
      phase = `outage ${mode}`;
      const downAt = Date.now();
      await pg.stop(mode);
      await sleep(2_000);
      await pg.start();
      const upAt = Date.now();
      phase = `recovering ${mode}`;
      const recoveredMs = await recovery();
      outages.push({ mode, downMs: upAt - downAt, recoveredMs });
    }
    phase = "after";
    await sleep(1_500);
    const result = await load.stop();

    console.info(
      `postgres restarted under load: ${WORKERS} clients, ${result.iterations} iterations (BulkAssign of 200 + Assign, ` +
        `GetExperiment every 5th) in ${result.elapsedMs} ms, ${answers} answers (${unstoredAnswers} unstored); ` +
        `calls by status ${JSON.stringify(Object.fromEntries(codes))}; by phase ${JSON.stringify(Object.fromEntries(byPhase))}; ` +
        `outages ${JSON.stringify(outages)} (recoveredMs: from PostgreSQL accepting connections to the first stored answer)`,
    );
    expect(wrong.first, `${wrong.count} problems`).toEqual([]);
    expect([...codes.keys()].sort()).toEqual(["OK", "UNAVAILABLE"]);
    for (const o of outages) expect(o.recoveredMs, `recovered by itself after pg_ctl stop -m ${o.mode}`).toBeDefined();
    // Each outage was felt (refusals or unstored answers) and each phase had traffic.
    for (const mode of ["fast", "immediate"]) {
      const p = byPhase.get(`outage ${mode}`)!;
      expect(p.unavailable + p.unstored, `outage ${mode}`).toBeGreaterThan(0);
      expect(byPhase.get(`before ${mode}`)!.ok).toBeGreaterThan(0);
    }
    expect(byPhase.get("after")!.ok).toBeGreaterThan(0);
    expect(byPhase.get("after")!.unavailable).toBe(0);

    // Nothing acknowledged is lost, nothing stored is wrong (SQL on the restarted database).
    const stored = await storedAssignments(pg.url, KEY);
    const lost = [...acknowledged].filter(([u, v]) => stored.get(u)?.variant !== v);
    expect(lost.slice(0, 10), `${lost.length} acknowledged units missing or different`).toEqual([]);
    const badRows = [...stored].filter(([u, s]) => s.variant !== sticky(u));
    expect(badRows.slice(0, 10)).toEqual([]);
    for (const u of OLD) expect(stored.has(u)).toBe(true);

    // Every acknowledged unit answers its variant again, STICKY (read from the restarted store).
    const ack = [...acknowledged.keys()];
    for (let k = 0; k < ack.length; k += 10_000) {
      const ids = ack.slice(k, k + 10_000);
      const col = columnAnswers((await c.assignments.bulkAssign({ experimentKey: KEY, unitIds: ids })).column!);
      const off = ids.filter((u, j) => col[j].variantKey !== acknowledged.get(u) || col[j].reason !== Reason.STICKY);
      expect(off.slice(0, 10)).toEqual([]);
    }
    console.info(
      `postgres restarted under load: ${acknowledged.size} units acknowledged as stored, all found in the database after both restarts (${stored.size} rows)`,
    );
  });

  it("after the restarts, a configuration change made through another server is served within 1 s (LISTEN reconnected)", async () => {
    const other = await startServer({
      databaseUrl: pg.url,
      port: 0,
      memoryCacheEntries: 0,
      logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    });
    d.own("second server", () => other.close());
    const oc = rawClients(other.address);
    try {
      const cur = (await oc.experiments.getExperiment({ key: KEY })).experiment!;
      await oc.experiments.updateExperiment({ key: KEY, version: cur.version, status: ExperimentStatus.PAUSED });
      const tookMs = await timeUntil(
        async () =>
          (await c.assignments.assign({ experimentKey: KEY, unitId: `paused-${Math.random()}` })).assignment!.reason === Reason.PAUSED,
        1_000,
        10,
      );
      console.info(`postgres restarted: a status change made through another server was served after ${tookMs} ms`);
      expect(tookMs, "served within 1 s").toBeDefined();
      expect(tookMs!).toBeLessThan(1_000);
    } finally {
      oc.close();
    }
  });
});
