/**
 * The event log (SPEC.md "Assignment events") against a real PostgreSQL: concurrent writers of
 * every kind, a transaction held open across sequencer steps, a consumer reading while steps run.
 * What it checks comes from the database itself: the rows stored (and overrides, erasures made)
 * are the truth; the events and the live counts must agree with them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { AssignmentStore } from "../../src/store/assignment-store.js";
import type { Actor } from "../../src/store/audit-log.js";
import type { Database } from "../../src/store/database.js";
import { ErasureStore } from "../../src/store/erasure-store.js";
import { EventKind, EventLog, type StoredEvent } from "../../src/store/event-log.js";
import { ExperimentStore } from "../../src/store/experiment-store.js";
import { OverrideStore } from "../../src/store/override-store.js";
import { PgDatabase } from "../../src/store/pg-database.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { TransferStore } from "../../src/store/transfer-store.js";
import { freshDatabase } from "../support/services.js";

const actor: Actor = { tokenName: "test", tokenRole: "admin", rpc: "Test" };

async function experiment(db: Database, key: string): Promise<number> {
  await db.query(`INSERT INTO salts VALUES ($1, $2)`, [key, `experiment:${key}`]);
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status)
     VALUES ($1, $1, 'user_id', 1, '[{"id":0,"key":"a","weight":5000},{"id":1,"key":"b","weight":5000}]', 10000, 2)
     RETURNING id`,
    [key],
  );
  return rows[0]!.id;
}

/** Every event after `after`, read in pages as a consumer would. */
async function readAll(log: EventLog, after = 0n, page = 1000): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let p = after;
  for (;;) {
    const batch = await log.read(p, page);
    out.push(...batch);
    if (batch.length < page) return out;
    p = batch[batch.length - 1]!.position;
  }
}

/** What the events say the store holds now: replayed from the start. */
function replay(events: StoredEvent[]): { stored: Map<string, string>; overrides: Map<string, string> } {
  const stored = new Map<string, string>();
  const overrides = new Map<string, string>();
  for (const e of events) {
    const cell = `${e.experimentKey}/${e.unitId}`;
    if (e.kind === EventKind.ERASED) {
      for (const m of [stored, overrides]) for (const k of [...m.keys()]) if (k.endsWith(`/${e.unitId}`)) m.delete(k);
    } else if (e.kind === EventKind.OVERRIDE_SET) overrides.set(cell, e.variantKey!);
    else if (e.kind === EventKind.OVERRIDE_CLEARED) overrides.delete(cell);
    else stored.set(cell, `${e.variantKey}:${e.source}`);
  }
  return { stored, overrides };
}

/** What the database holds, in the same shape. */
async function truth(db: Database) {
  const { rows: s } = await db.query<{ cell: string; v: string }>(
    `SELECT e.key || '/' || a.unit_id AS cell, (SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = a.variant) || ':' || a.source AS v
       FROM assignments a JOIN experiments e ON e.id = a.experiment_id`,
  );
  const { rows: o } = await db.query<{ cell: string; v: string }>(
    `SELECT e.key || '/' || o.unit_id AS cell, (SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = o.variant) AS v
       FROM overrides o JOIN experiments e ON e.id = o.experiment_id`,
  );
  return { stored: new Map(s.map((r) => [r.cell, r.v])), overrides: new Map(o.map((r) => [r.cell, r.v])) };
}

/** COUNT(*) per variant and source, as GetExperimentStats counted before live counts. */
async function countedRows(db: Database, experimentId: number) {
  const { rows } = await db.query<{ variant: number; source: number; n: string }>(
    `SELECT variant, source, count(*) AS n FROM assignments WHERE experiment_id = $1 GROUP BY 1, 2
     UNION ALL SELECT variant, 3, count(*) FROM overrides WHERE experiment_id = $1 GROUP BY 1
     ORDER BY 2, 1`,
    [experimentId],
  );
  return rows.map((r) => ({ variantId: r.variant, source: r.source, units: Number(r.n) }));
}

const newRows = (experimentId: number, prefix: string, n: number, variant = (i: number) => i % 2) =>
  Array.from({ length: n }, (_, i) => ({
    experimentId,
    unitId: `${prefix}${i}`,
    variantId: variant(i),
    version: 1n,
    source: Source.HASH,
  }));

describe("event log on PostgreSQL", () => {
  let fresh: Awaited<ReturnType<typeof freshDatabase>>;
  let db: PgDatabase;
  let log: EventLog;

  beforeAll(async () => {
    fresh = await freshDatabase();
    db = new PgDatabase({ url: fresh.url, max: 12 });
    await db.migrate();
    log = new EventLog(db);
  });
  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  it("numbers every change once, gap-free, while a consumer reads and a transaction stays open across steps", async () => {
    const e1 = await experiment(db, "ev1");
    const e2 = await experiment(db, "ev2");
    const store = new AssignmentStore(db, { maxBatchRows: 500 });
    const overrides = new OverrideStore(db);
    const erasures = new ErasureStore(db);
    const transfers = new TransferStore(db);

    // A transaction that stays open while everything else commits and is sequenced: its rows must
    // not be skipped, and must come after everything numbered before it committed.
    const long = await db.session();
    await long.query("BEGIN");
    await long.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES ($1, 'long-1', 1, 1, 2), ($1, 'long-2', 0, 1, 2)`,
      [e1],
    );

    // The consumer: reads after its last position while the writers and the sequencer run.
    const consumed: StoredEvent[] = [];
    let consuming = true;
    const consumer = (async () => {
      let p = 0n;
      while (consuming || (await log.sequence()) > 0 || (await log.read(p, 1)).length > 0) {
        const batch = await log.read(p, 200);
        consumed.push(...batch);
        if (batch.length > 0) p = batch[batch.length - 1]!.position;
        else await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let sequencing = true;
    const sequencers = [0, 1].map(async () => {
      while (sequencing) {
        await log.sequence();
        await new Promise((r) => setTimeout(r, 3));
      }
    });

    const writers = Array.from({ length: 6 }, (_, w) =>
      (async () => {
        for (let round = 0; round < 5; round++) {
          // Overlapping units across writers: only the first insert of a cell is an event.
          await store.insert(newRows(w % 2 ? e1 : e2, `u${round}-`, 300, (i) => (i + w) % 2));
        }
      })(),
    );
    await Promise.all(writers);
    // Overrides: set, re-set to another variant, cleared.
    await overrides.setOverrides("ev1", ["u0-1", "u0-2", "u0-3"], [1, 1, 0], actor);
    await overrides.setOverrides("ev1", ["u0-1"], [0], actor);
    await overrides.clearOverrides("ev1", ["u0-2"], actor);
    // An overwriting import (UPDATE of stored rows), through the staging merge.
    const imp = await transfers.beginImport();
    await imp.write(
      { experimentIds: Int32Array.from([e2, e2, e2]), unitIds: ["u1-0", "u1-1", "imported-new"], variantIds: Int32Array.from([1, 1, 1]) },
      true,
    );
    await imp.commit(true);
    // A copy of e2's rows into a third experiment.
    const e3 = await experiment(db, "ev3");
    await transfers.copyPage(
      { id: e2, key: "ev2" },
      { id: e3, key: "ev3", version: 1n },
      new Map([
        [0, 1],
        [1, 0],
      ]),
      undefined,
      100,
      actor,
    );
    // An erasure of units of both experiments (and an override).
    await erasures.eraseUnits("user_id", ["u0-1", "u2-5", "u3-7"], actor);

    await long.query("COMMIT");
    long.release();
    sequencing = false;
    await Promise.all(sequencers);
    consuming = false;
    await consumer;

    const all = await readAll(log);
    // Gap-free, strictly increasing from 1.
    expect(all.map((e) => Number(e.position))).toEqual(all.map((_, i) => i + 1));
    // The consumer, reading while steps ran, got each exactly once, in order.
    expect(consumed.map((e) => e.position)).toEqual(all.map((e) => e.position));
    // Replaying the events gives what the database holds.
    const replayed = replay(all);
    const t = await truth(db);
    expect(replayed.stored).toEqual(t.stored);
    expect(replayed.overrides).toEqual(t.overrides);
    // Every kind appeared.
    const kinds = new Set(all.map((e) => e.kind));
    for (const k of Object.values(EventKind)) expect(kinds, `kind ${k}`).toContain(k);
    // The open transaction's rows came after every event of the writers numbered before it committed.
    const longEvents = all.filter((e) => e.unitId.startsWith("long-"));
    expect(longEvents).toHaveLength(2);
    const erased = all.filter((e) => e.kind === EventKind.ERASED);
    expect(erased.map((e) => e.unitId).sort()).toEqual(["u0-1", "u2-5", "u3-7"]);
    expect(erased.every((e) => e.unitType === "user_id" && e.experimentKey === undefined)).toBe(true);
    expect(Math.min(...longEvents.map((e) => Number(e.position)))).toBeGreaterThan(Math.max(...erased.map((e) => Number(e.position))));
    // Live counts equal COUNT(*).
    const experiments = new ExperimentStore(db);
    for (const id of [e1, e2, e3]) expect(await experiments.countAssignments(id)).toEqual(await countedRows(db, id));
  });

  it("counts exactly before the sequencer ran (outbox deltas) and after", async () => {
    const id = await experiment(db, "cnt");
    const store = new AssignmentStore(db);
    const experiments = new ExperimentStore(db);
    await store.insert(newRows(id, "c", 101));
    await db.query(`UPDATE assignments SET variant = 1, source = 2 WHERE experiment_id = $1 AND unit_id IN ('c0', 'c2')`, [id]);
    await new ErasureStore(db).eraseUnits("user_id", ["c4"], actor);
    const expected = await countedRows(db, id);
    expect(expected).toEqual([
      { variantId: 0, source: 1, units: 48 },
      { variantId: 1, source: 1, units: 50 },
      { variantId: 1, source: 2, units: 2 },
    ]);
    expect(await experiments.countAssignments(id)).toEqual(expected);
    while ((await log.sequence()) > 0);
    expect(await experiments.countAssignments(id)).toEqual(expected);
  });

  it("keeps the changes of one unit in commit order when transactions interleave", async () => {
    const id = await experiment(db, "order");
    // T1 takes its xid first, T2 inserts the unit and commits, T1 then erases it and commits:
    // the erasure must come after the insert although T1's xid is the smaller.
    const t1 = await db.session();
    await t1.query("BEGIN");
    await t1.query(`INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES ($1, 'other', 0, 1, 1)`, [id]);
    await db.query(`INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES ($1, 'x', 1, 1, 1)`, [id]);
    await t1.query(`SELECT set_config('assignment.event_kind', 'erase', true)`);
    await t1.query(`DELETE FROM assignments WHERE experiment_id = $1 AND unit_id = 'x'`, [id]);
    await t1.query(`INSERT INTO assignment_outbox (kind, unit_type, unit_id) VALUES (7, 'user_id', 'x')`);
    await t1.query("COMMIT");
    t1.release();
    const before = await log.lastPosition();
    while ((await log.sequence()) > 0);
    const events = (await readAll(log, before)).filter((e) => e.unitId === "x");
    expect(events.map((e) => e.kind)).toEqual([EventKind.ASSIGNED, EventKind.ERASED]);
  });

  it("prunes by number and answers the oldest position kept", async () => {
    while ((await log.sequence()) > 0);
    const last = await log.lastPosition();
    await log.prune(undefined, 10);
    expect(await log.oldestPosition()).toBe(last - 9n);
    expect((await readAll(log)).length).toBe(10);
  });
});

describe("event log on PGlite", () => {
  it("records and numbers the same events on the embedded database", async () => {
    const db = await PgliteDatabase.open({ dataDir: "memory://" });
    try {
      await db.migrate();
      const id = await experiment(db, "lite");
      const log = new EventLog(db);
      await new AssignmentStore(db).insert(newRows(id, "p", 10));
      await new ErasureStore(db).eraseUnits("user_id", ["p3"], actor);
      expect(await log.sequence()).toBe(11);
      const events = await readAll(log);
      expect(events.map((e) => e.kind)).toEqual([...Array(10).fill(EventKind.ASSIGNED), EventKind.ERASED]);
      expect(await new ExperimentStore(db).countAssignments(id)).toEqual(await countedRows(db, id));
    } finally {
      await db.close();
    }
  }, 60_000);
});
