/**
 * The PostgreSQL import path of TransferStore, against a real database, with small chunks: which
 * chunks go straight into assignments (each in its own subtransaction, so with its own xmin) and
 * which take the staged merge (in the import's top-level transaction).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { partitionRoute } from "../../src/store/partition-route.js";
import { PgDatabase } from "../../src/store/pg-database.js";
import { TransferStore, type StagedRows } from "../../src/store/transfer-store.js";
import { freshDatabase } from "../support/services.js";

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let db: PgDatabase;
let experiments = 0;

beforeAll(async () => {
  fresh = await freshDatabase();
  db = new PgDatabase({ url: fresh.url, max: 4 });
  await db.migrate();
});
afterAll(async () => {
  await db?.close();
  await fresh?.drop();
});

/** A RUNNING experiment with variants 0 and 1, made in SQL: this test is about storage only. */
async function experiment(): Promise<{ id: number; version: string }> {
  const key = `t${++experiments}`;
  await db.query(`INSERT INTO salts VALUES ($1, $2)`, [key, `experiment:${key}`]);
  const { rows } = await db.query<{ id: number; version: string }>(
    `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status)
     VALUES ($1, $1, 'user_id', 1, '[{"id":0,"key":"a","weight":5000},{"id":1,"key":"b","weight":5000}]', 10000, 2)
     RETURNING id, version::text AS version`,
    [key],
  );
  return rows[0];
}

const rowsOf = (experimentId: number, unitIds: string[], variant = (i: number) => i % 2): StagedRows => ({
  experimentIds: Int32Array.from(unitIds, () => experimentId),
  unitIds,
  variantIds: Int32Array.from(unitIds, (_, i) => variant(i)),
});

async function stored(experimentId: number) {
  const { rows } = await db.query<{ unit_id: string; variant: number; version: string; source: number; xmin: string }>(
    `SELECT unit_id, variant, version::text AS version, source, xmin::text AS xmin FROM assignments WHERE experiment_id = $1`,
    [experimentId],
  );
  return { rows, units: new Map(rows.map((r) => [r.unit_id, r])), transactions: new Set(rows.map((r) => r.xmin)).size };
}

describe("TransferStore import on PostgreSQL", () => {
  it("COPYs at most maxImportSavepoints chunks straight in (one subtransaction each), then merges the rest in the top-level transaction", async () => {
    const e = await experiment();
    const store = new TransferStore(db, { importChunkRows: 100, maxImportSavepoints: 3 });
    const staging = await store.beginImport();
    for (let m = 0; m < 10; m++) {
      await staging.write(
        rowsOf(
          e.id,
          Array.from({ length: 100 }, (_, i) => `u-${m * 100 + i}`),
        ),
        false,
      );
    }
    const result = await staging.commit(false);
    expect(result.imported).toBe(1_000);
    const s = await stored(e.id);
    expect(s.rows.length).toBe(1_000);
    // Chunks 1-3 each in their own subtransaction, chunks 4-10 in the import's transaction.
    expect(s.transactions).toBe(4);
    expect(s.rows.filter((r) => r.version !== e.version || r.source !== Source.IMPORT)).toEqual([]);
    expect(s.units.get("u-7")?.variant).toBe(1);
  });

  it("after a chunk meets a unit the import already had, that chunk and the rest are merged (first row counts)", async () => {
    const e = await experiment();
    const store = new TransferStore(db, { importChunkRows: 100, maxImportSavepoints: 48 });
    const staging = await store.beginImport();
    await staging.write(
      rowsOf(
        e.id,
        Array.from({ length: 100 }, (_, i) => `u-${i}`),
      ),
      false,
    );
    // The second chunk repeats u-5 with the other variant: its COPY fails on the unique key.
    await staging.write(
      rowsOf(e.id, ["u-5", ...Array.from({ length: 99 }, (_, i) => `v-${i}`)], () => 0),
      false,
    );
    await staging.write(
      rowsOf(
        e.id,
        Array.from({ length: 100 }, (_, i) => `w-${i}`),
      ),
      false,
    );
    const result = await staging.commit(false);
    expect(result.imported).toBe(299);
    const s = await stored(e.id);
    expect(s.rows.length).toBe(299);
    expect(s.units.get("u-5")?.variant).toBe(1); // the first row of u-5 (i = 5: variant 1)
    // The first chunk in its subtransaction; the second (undone, then merged) and third in the import's.
    expect(s.transactions).toBe(2);
  });

  it("COPYs units new to an experiment that holds rows straight in too, and merges once a stored unit comes (kept, not counted)", async () => {
    const e = await experiment();
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES ($1, 'old-1', 0, $2, ${Source.HASH})`,
      [e.id, e.version],
    );
    const store = new TransferStore(db, { importChunkRows: 100 });
    let staging = await store.beginImport();
    for (let m = 0; m < 2; m++)
      await staging.write(
        rowsOf(
          e.id,
          Array.from({ length: 100 }, (_, i) => `n-${m * 100 + i}`),
        ),
        false,
      );
    expect((await staging.commit(false)).imported).toBe(200);
    let s = await stored(e.id);
    // The stored row's transaction, and one subtransaction per chunk straight in.
    expect(s.transactions).toBe(3);
    staging = await store.beginImport();
    await staging.write(
      rowsOf(e.id, ["m-1", "old-1", "m-2"], () => 1),
      false,
    );
    const result = await staging.commit(false);
    expect(result.imported).toBe(2);
    s = await stored(e.id);
    expect(s.rows.length).toBe(203);
    expect(s.units.get("old-1")).toMatchObject({ variant: 0, source: Source.HASH });
    expect(s.units.get("m-2")).toMatchObject({ variant: 1, source: Source.IMPORT });
  });

  it("COPYs a chunk into the partitions that hold its units, one COPY per partition, each partition's trigger writing one event per row", async () => {
    const e = await experiment();
    expect((await partitionRoute(db))?.names).toHaveLength(16);
    const store = new TransferStore(db);
    const staging = await store.beginImport();
    const unitIds = Array.from({ length: 1_000 }, (_, i) => `p-${i}`);
    await staging.write(rowsOf(e.id, unitIds.slice(0, 500)), false);
    await staging.write(rowsOf(e.id, unitIds.slice(500)), false);
    const result = await staging.commit(false);
    expect(result).toMatchObject({ imported: 1_000, importedPerExperiment: new Map([[e.id, 1_000]]) });
    // One event per row: neither the partitioned table's trigger as well as a partition's, nor none.
    const { rows: events } = await db.query<{ unit_id: string; kind: number; partition: string }>(
      `SELECT o.unit_id, o.kind, a.tableoid::regclass::text AS partition
         FROM assignment_outbox o JOIN assignments a ON a.experiment_id = o.experiment_id AND a.unit_id = o.unit_id
        WHERE o.experiment_id = $1 ORDER BY o.id`,
      [e.id],
    );
    expect(events.map((r) => r.unit_id).sort()).toEqual([...unitIds].sort());
    expect(new Set(events.map((r) => r.kind))).toEqual(new Set([2])); // imported
    // Written partition by partition (one COPY, so one trigger call, each), not in import order as
    // a COPY into the partitioned table writes them: as many runs of one partition as partitions.
    const runs = events.filter((r, i) => i === 0 || r.partition !== events[i - 1]!.partition).length;
    expect(runs).toBe(16);
  });

  it("COPYs into the partitioned table when a partition lacks one of its INSERT triggers", async () => {
    // An import through it still writes one event a row (the partitioned table's trigger's).
    const e = await experiment();
    const client = await db.bulkCopy!.session();
    try {
      await client.query(`DROP TRIGGER assignment_events_inserted ON assignments_p5`);
      expect(await partitionRoute(client)).toBeUndefined();
      const store = new TransferStore(db, { importChunkRows: 100 });
      const staging = await store.beginImport();
      const unitIds = Array.from({ length: 300 }, (_, i) => `q-${i}`);
      await staging.write(rowsOf(e.id, unitIds), false);
      expect((await staging.commit(false)).imported).toBe(300);
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM assignment_outbox WHERE experiment_id = $1`, [e.id]);
      expect(rows).toEqual([{ n: 300 }]);
    } finally {
      await client.query(
        `CREATE TRIGGER assignment_events_inserted AFTER INSERT ON assignments_p5 REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION assignment_events_inserted()`,
      );
      client.release();
    }
    expect(await partitionRoute(db)).toBeDefined();
  });
});
