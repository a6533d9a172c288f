/**
 * Read replicas (README "Read replicas"): replication lag never produces a wrong answer.
 *
 * A DEDICATED primary PostgreSQL and a real streaming replica of it (`pg_basebackup -R`: a hot
 * standby, harness/postgres-server.ts). Server R reads stored assignments on the replica
 * (databaseReadUrls), without Redis and with its in-process cache off, so every answer comes from
 * the replica or the primary; server P uses the primary alone (another server of the same
 * installation). Lag is made by pausing the replica's replay (`pg_wal_replay_pause()`), and
 * checked to be real (the replica lacks what the primary has).
 *
 * While the replica lags:
 * - units stored on the primary after the pause (by P, and by SQL with the variant the hash does
 *   NOT give, as an import or an older configuration would) are answered by R STICKY with the
 *   primary's variant, never NEW with another one (a unit the replica lacks goes to the primary,
 *   whose INSERT conflict reveals the stored row);
 * - units erased through R, and units erased through P, are answered NEW (by the hash), not with
 *   the stale row the replica still holds; overrides set through P are answered OVERRIDE within
 *   SPEC.md's 1 s bound (polled), not the stale row: R knows of the change (NOTIFY), and a replica
 *   whose configuration epoch is older is not used.
 * Before the pause and after the replay resumes, R's reads are answered by the replica (its
 * lookups on the "replica" layer, from R's metrics), so the replica is really in use.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, Source, columnAnswers } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import type { PostgresServer } from "../../harness/postgres-server.js";
import { eventually, scrapeMetrics, specVariant, sql, units } from "../grpc/helpers.js";
import { Dedicated } from "../support/dedicated.js";
import { rawClients } from "../reliability/support/load.js";

const d = new Dedicated();
let primary: PostgresServer;
let replica: PostgresServer;
let r: RunningServer;
let p: RunningServer;
let cr: ReturnType<typeof rawClients>;
let cp: ReturnType<typeof rawClients>;

const KEY = "lagged";
const W = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const hashed = (u: string) => specVariant(u, KEY, W);
const other = (u: string) => (hashed(u) === "a" ? "b" : "a");

const EARLY = units("early-", 300); // stored through R before the pause: on both
const PLANTED = units("planted-", 100); // stored by SQL with the other variant before the pause: on both
const LATE = units("late-", 300); // stored through P after the pause: on the primary only
const FORCED = units("forced-", 100); // stored by SQL with the other variant after the pause: primary only

async function start(readUrls: string[] | undefined, metrics: boolean): Promise<RunningServer> {
  return startServer({
    databaseUrl: primary.url,
    databaseReadUrls: readUrls,
    port: 0,
    memoryCacheEntries: 0,
    metricsPort: metrics ? 0 : undefined,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
  });
}

/** Rows of `units` (of KEY) stored on `url`. */
async function storedCount(url: string, ids: readonly string[]): Promise<number> {
  const rows = await sql<{ n: number }>(
    url,
    "SELECT count(*)::int AS n FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = $1 AND a.unit_id = ANY($2)",
    [KEY, ids],
  );
  return rows[0]!.n;
}

/** Stores `ids` of KEY by SQL on the primary, each with the variant its hash does not give. */
async function plant(ids: readonly string[]): Promise<void> {
  await sql(
    primary.url,
    `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
     SELECT e.id, t.u, (v->>'id')::int, e.version, ${Source.HASH}
       FROM experiments e, unnest($2::text[], $3::text[]) AS t(u, k), jsonb_array_elements(e.variants) v
      WHERE e.key = $1 AND v->>'key' = t.k`,
    [KEY, ids, ids.map(other)],
  );
}

/** Waits until the replica has replayed everything the primary has written. */
async function caughtUp(): Promise<void> {
  const [{ lsn }] = await sql<{ lsn: string }>(primary.url, "SELECT pg_current_wal_insert_lsn()::text AS lsn");
  const ok = await eventually(async () => {
    const [x] = await sql<{ ok: boolean }>(replica.url, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [lsn]);
    return x!.ok;
  }, 30_000);
  expect(ok, "the replica did not catch up within 30 s").toBe(true);
}

const replicaLookups = async () => {
  const m = await scrapeMetrics(r.metricsPort!);
  return {
    hits: m.get(`assignment_cache_lookups_total{layer="replica",result="hit"}`) ?? 0,
    misses: m.get(`assignment_cache_lookups_total{layer="replica",result="miss"}`) ?? 0,
  };
};

const ask = async (c: ReturnType<typeof rawClients>, ids: readonly string[]) =>
  columnAnswers((await c.assignments.bulkAssign({ experimentKey: KEY, unitIds: [...ids] })).column!);

beforeAll(async () => {
  primary = await d.postgres();
  replica = await d.standby(primary);
  p = await start(undefined, false);
  d.own("server P", () => p.close());
  r = await start([replica.url], true);
  d.own("server R", () => r.close());
  cr = rawClients(r.address);
  cp = rawClients(p.address);
});
afterAll(async () => {
  cr?.close();
  cp?.close();
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

describe("read replica under replication lag", () => {
  it("answers what the primary holds: stored units STICKY with the primary's variant, erasures and overrides at once", async () => {
    await cr.experiments.createExperiment({ key: KEY, variants: W, status: ExperimentStatus.RUNNING });
    expect(await eventually(async () => p.registry.get(KEY) !== undefined, 10_000)).toBe(true);
    // Before the pause: EARLY stored through R (NEW), PLANTED by SQL; both replicated.
    (await ask(cr, EARLY)).forEach((x, i) => expect([x.variantKey, x.reason], EARLY[i]).toEqual([hashed(EARLY[i]!), Reason.NEW]));
    await plant(PLANTED);
    await caughtUp();
    expect(await storedCount(replica.url, [...EARLY, ...PLANTED])).toBe(400);

    // The replica answers them (its layer counts them as hits).
    const before = await replicaLookups();
    (await ask(cr, EARLY)).forEach((x, i) => expect([x.variantKey, x.reason], EARLY[i]).toEqual([hashed(EARLY[i]!), Reason.STICKY]));
    (await ask(cr, PLANTED)).forEach((x, i) => expect([x.variantKey, x.reason], PLANTED[i]).toEqual([other(PLANTED[i]!), Reason.STICKY]));
    expect((await replicaLookups()).hits - before.hits).toBe(400);

    // Lag: replay paused.
    await sql(replica.url, "SELECT pg_wal_replay_pause()");
    expect(
      await eventually(
        async () => (await sql<{ s: string }>(replica.url, "SELECT pg_get_wal_replay_pause_state() AS s"))[0]!.s === "paused",
        10_000,
      ),
    ).toBe(true);

    // Stored on the primary after the pause: LATE through P, FORCED by SQL with the other variant.
    (await ask(cp, LATE)).forEach((x, i) => expect([x.variantKey, x.reason], LATE[i]).toEqual([hashed(LATE[i]!), Reason.NEW]));
    await plant(FORCED);
    expect(await storedCount(primary.url, [...LATE, ...FORCED])).toBe(400);
    expect(await storedCount(replica.url, [...LATE, ...FORCED]), "the replica lags").toBe(0);

    // R answers them from the primary: STICKY with the primary's variant, not NEW.
    (await ask(cr, LATE)).forEach((x, i) => expect([x.variantKey, x.reason], LATE[i]).toEqual([hashed(LATE[i]!), Reason.STICKY]));
    (await ask(cr, FORCED)).forEach((x, i) => expect([x.variantKey, x.reason], FORCED[i]).toEqual([other(FORCED[i]!), Reason.STICKY]));
    // One by one too (Assign), in case a batch hides something.
    for (const u of FORCED.slice(0, 10)) {
      const a = (await cr.assignments.assign({ experimentKey: KEY, unitId: u })).assignment!;
      expect([a.variantKey, a.reason], u).toEqual([other(u), Reason.STICKY]);
    }
    expect(await storedCount(replica.url, [...LATE, ...FORCED]), "still lagging").toBe(0);

    // Erasure through R of planted units the replica still holds (with the other variant): NEW by
    // the hash, not the erased row.
    const erasedByR = PLANTED.slice(0, 20);
    await cr.experiments.eraseUnits({ unitIds: erasedByR });
    expect(await storedCount(replica.url, erasedByR), "the replica still holds them").toBe(20);
    (await ask(cr, erasedByR)).forEach((x, i) =>
      expect([x.variantKey, x.reason], erasedByR[i]).toEqual([hashed(erasedByR[i]!), Reason.NEW]),
    );

    // Erasure and overrides through P (R hears of them by NOTIFY): within the 1 s bound R
    // answers them (polled; a replica answer would never change while replay is paused).
    const erasedByP = PLANTED.slice(20, 40);
    await cp.experiments.eraseUnits({ unitIds: erasedByP });
    expect(
      await eventually(async () => {
        const xs = await ask(cr, erasedByP);
        return xs.every((x, i) => x.reason === Reason.NEW && x.variantKey === hashed(erasedByP[i]!));
      }, 10_000),
    ).toBe(true);
    const overridden = EARLY.slice(0, 30);
    await cp.experiments.setOverrides({
      experimentKey: KEY,
      overrides: overridden.map((unitId) => ({ unitId, variantKey: other(unitId) })),
    });
    expect(
      await eventually(async () => {
        const xs = await ask(cr, overridden);
        return xs.every((x, i) => x.reason === Reason.OVERRIDE && x.variantKey === other(overridden[i]!));
      }, 10_000),
    ).toBe(true);
    // Once R knows of a change, a replica that has not replayed it is not used for anything, so
    // the rest of EARLY is answered (right) by the primary.
    const rest = EARLY.slice(30);
    (await ask(cr, rest)).forEach((x, i) => expect([x.variantKey, x.reason], rest[i]).toEqual([hashed(rest[i]!), Reason.STICKY]));

    // Replay resumed: the replica catches up and answers again, the same.
    await sql(replica.url, "SELECT pg_wal_replay_resume()");
    await caughtUp();
    const resumed = await replicaLookups();
    (await ask(cr, [...LATE, ...FORCED])).forEach((x, i) => {
      const u = [...LATE, ...FORCED][i]!;
      expect([x.variantKey, x.reason], u).toEqual([u.startsWith("late-") ? hashed(u) : other(u), Reason.STICKY]);
    });
    (await ask(cr, overridden)).forEach((x, i) =>
      expect([x.variantKey, x.reason], overridden[i]).toEqual([other(overridden[i]!), Reason.OVERRIDE]),
    );
    expect((await replicaLookups()).hits - resumed.hits).toBe(430);
  });
});
