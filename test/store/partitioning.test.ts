/**
 * The partitioned assignments table (migration 7_partitioned-assignments, src/store/partition-move.ts):
 * a new installation gets ASSIGNMENT_PARTITIONS hash partitions by unit id; the hot statements the
 * stores really send prune to the unit's partition (EXPLAIN ANALYZE on real PostgreSQL: plan shape,
 * not timing); an installation with rows upgrades in place by the batched copy and swap, losing no
 * change made meanwhile, on PostgreSQL and on the embedded PGlite.
 */
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { AssignmentStore } from "../../src/store/assignment-store.js";
import { compareCodePoints, type ExportedRow, exportByPartitions } from "../../src/store/copy-export.js";
import type { Database, Queryable } from "../../src/store/database.js";
import { ErasureStore } from "../../src/store/erasure-store.js";
import { MIGRATIONS_DIR, type MigrationClient, runMigrations } from "../../src/store/migrations.js";
import { readPartitionLayout } from "../../src/store/partition-layout.js";
import { assignmentPartitionCount, moveStep, partitionMovePending, runPartitionMove } from "../../src/store/partition-move.js";
import { partitionRoute } from "../../src/store/partition-route.js";
import { PgDatabase } from "../../src/store/pg-database.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { TransferStore } from "../../src/store/transfer-store.js";
import { freshDatabase } from "../support/services.js";

type Fresh = Awaited<ReturnType<typeof freshDatabase>>;
const dropped: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const d of dropped.reverse()) await d();
});

async function pgDatabase(): Promise<{ fresh: Fresh; db: PgDatabase }> {
  const fresh = await freshDatabase();
  const db = new PgDatabase({ url: fresh.url, max: 6 });
  dropped.push(
    () => fresh.drop(),
    () => db.close(),
  );
  return { fresh, db };
}

/** Statements a store sends, recorded (and run) as sent. */
function recording(db: Database): { db: Database; sent: Array<{ text: string; values?: unknown[] }> } {
  const sent: Array<{ text: string; values?: unknown[] }> = [];
  const record = (q: Queryable): Queryable => ({
    query(text, values) {
      sent.push({ text, values });
      return q.query(text, values);
    },
  });
  const wrapped = Object.create(db) as Database;
  Object.assign(wrapped, {
    query: record(db).query,
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => db.transaction((tx) => fn(record(tx))),
  });
  return { db: wrapped, sent };
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Actual Loops"?: number;
  "Index Cond"?: string;
  Plans?: PlanNode[];
}

/** Partitions of assignments a statement read, and those it planned, from EXPLAIN ANALYZE (in a
 * transaction rolled back, so that an INSERT or DELETE leaves nothing). */
async function partitionsTouched(db: Database, text: string, values?: unknown[], options: { seqScanOff?: boolean } = {}) {
  const plan = await db
    .transaction(async (tx) => {
      // A few rows make a sequential read the planner's cheapest choice; with it priced out, a
      // Seq Scan left in the plan means no index can serve the statement.
      if (options.seqScanOff) await tx.query("SET LOCAL enable_seqscan = off");
      const { rows } = await tx.query<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(
        `EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF, SUMMARY OFF) ${text}`,
        values,
      );
      throw Object.assign(new Error("rollback"), { plan: rows[0]!["QUERY PLAN"][0]!.Plan });
    })
    .catch((err: { plan?: PlanNode }) => {
      if (!err.plan) throw err;
      return err.plan;
    });
  const planned = new Set<string>();
  const read = new Set<string>();
  /** Partitions read whole: sequentially, or along an index without a condition on its first
   * column (experiment_id), which is a read of the whole index. */
  const readWhole = new Set<string>();
  const nodes: string[] = [];
  const walk = (n: PlanNode) => {
    nodes.push(n["Node Type"]);
    const rel = n["Relation Name"];
    if (rel?.startsWith("assignments_p")) {
      planned.add(rel);
      if ((n["Actual Loops"] ?? 0) > 0) read.add(rel);
      if (!/\(experiment_id = /.test(n["Index Cond"] ?? "")) readWhole.add(rel);
    }
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(plan);
  return { planned, read, nodes, readWhole };
}

/** The reads of stored assignments among the statements sent (not the catalog's). */
const pageLoads = (sent: Array<{ text: string; values?: unknown[] }>) => sent.filter((q) => /LEFT JOIN \S+ a ON/.test(q.text));
const cells = (experiments: number[], unitId: string) => experiments.map((experimentId) => ({ experimentId, unitId }));
const EXPERIMENTS = Array.from({ length: 20 }, (_, i) => i + 1);

describe("a new installation", () => {
  let db: PgDatabase;
  beforeAll(async () => {
    ({ db } = await pgDatabase());
    await db.migrate({ assignmentPartitions: 8 });
    // 20 experiments x 2,000 units, spread over the partitions by the hash of the unit id.
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT e, 'unit-' || u, u % 2, 1, 1 FROM generate_series(1, 20) e, generate_series(1, 2000) u`,
    );
    await db.query(`ANALYZE assignments`);
    for (const e of EXPERIMENTS) {
      await db.query(`INSERT INTO salts VALUES ($1, $2)`, [`s${e}`, `experiment:e${e}`]);
      await db.query(
        `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status)
         VALUES ($1, $2, 'user_id', 1, '[{"id":0,"key":"a","weight":5000},{"id":1,"key":"b","weight":5000}]', 10000, 2)`,
        [`e${e}`, `s${e}`],
      );
    }
  });

  it("has ASSIGNMENT_PARTITIONS hash partitions by unit id, holding every row, and no copy under way", async () => {
    const { rows } = await db.query<{ strategy: string; key: string; partitions: number }>(
      `SELECT p.partstrat AS strategy, pg_get_partkeydef(p.partrelid) AS key,
              (SELECT count(*)::int FROM pg_inherits i WHERE i.inhparent = p.partrelid) AS partitions
         FROM pg_partitioned_table p WHERE p.partrelid = 'assignments'::regclass`,
    );
    expect(rows).toEqual([{ strategy: "h", key: "HASH (unit_id)", partitions: 8 }]);
    const { rows: spread } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM assignments GROUP BY tableoid ORDER BY tableoid`,
    );
    expect(spread).toHaveLength(8);
    expect(spread.reduce((s, r) => s + r.n, 0)).toBe(40_000);
    expect(await partitionMovePending(db)).toBe(false);
    expect(await assignmentPartitionCount(db)).toBe(8);
    // A later start with another setting changes nothing: the count is fixed when the table is made.
    await db.migrate({ assignmentPartitions: 32 });
    expect(await assignmentPartitionCount(db)).toBe(8);
  });

  it("a page load (one unit, 20 experiments) reads one partition, and stores a new unit's cells in one", async () => {
    const { db: rec, sent } = recording(db);
    // Through the partitioned table itself (what a server does until it knows the layout).
    const store = new AssignmentStore(rec, { maxWaitMs: 0, partitionReads: false });
    const found = await store.read(cells(EXPERIMENTS, "unit-77"));
    expect(found.every((s) => s !== undefined)).toBe(true);
    const read = await partitionsTouched(db, sent[0]!.text, sent[0]!.values);
    expect(read.planned.size).toBe(1); // one unit: pruned when planned, its partition only
    expect(read.read.size).toBe(1);

    // Several units (BulkAssign, MatrixAssign): each is known at run time only (a join on the
    // unnested ids), so every partition is planned and all but the unit's are pruned per row.
    sent.length = 0;
    await store.read([...cells(EXPERIMENTS.slice(0, 10), "unit-77"), ...cells(EXPERIMENTS.slice(0, 10), "unit-78")]);
    const { rows: homes } = await db.query<{ n: number }>(
      `SELECT count(DISTINCT tableoid)::int AS n FROM assignments WHERE unit_id IN ('unit-77', 'unit-78')`,
    );
    const many = await partitionsTouched(db, sent[0]!.text, sent[0]!.values);
    expect(many.planned.size).toBe(8);
    expect(many.read.size).toBe(homes[0]!.n);

    sent.length = 0;
    const outcomes = await store.insert(
      EXPERIMENTS.map((e) => ({ experimentId: e, unitId: "brand-new", variantId: 1, version: 1n, source: Source.HASH })),
    );
    expect(outcomes.every((o) => o.won)).toBe(true);
    const { rows } = await db.query<{ partitions: number }>(
      `SELECT count(DISTINCT tableoid)::int AS partitions FROM assignments WHERE unit_id = 'brand-new'`,
    );
    expect(rows).toEqual([{ partitions: 1 }]);
  });

  it("once the layout is read, a page load names the unit's partition, and answers what the table answers", async () => {
    // Unit ids of every kind (empty, accented, emoji, spaces, long), stored in two experiments;
    // an override on one cell, and units stored nowhere.
    const awkward = ["", " ", "é", "\u{1F600}x", "a b", "日本", "x".repeat(100), "\uFFFD"];
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT e, u, 1, 1, 1 FROM unnest($1::text[]) u, generate_series(19, 20) e`,
      [awkward],
    );
    await db.query(
      `INSERT INTO overrides (experiment_id, unit_id, variant, version) VALUES (4, 'unit-1999', 1, 1), (19, 'é', 0, 1), (4, 'nowhere', 0, 1)`,
    );
    const { db: rec, sent } = recording(db);
    const store = new AssignmentStore(rec, { maxWaitMs: 0 });
    const table = new AssignmentStore(db, { partitionReads: false });
    expect(table.partitionLayout).toBeUndefined();
    await store.partitionLayout!.refresh();
    const units = [...awkward, "unit-1", "unit-77", "unit-1999", "unit-2000", "nowhere", "nowhere-\u{1F600}"];
    for (let u = 100; u < 400; u += 7) units.push(`unit-${u}`);
    const { rows: homes } = await db.query<{ u: string; p: string }>(
      `SELECT DISTINCT unit_id AS u, tableoid::regclass::text AS p FROM assignments WHERE unit_id = ANY($1::text[])`,
      [units],
    );
    const home = new Map(homes.map((r) => [r.u, r.p]));
    let found = 0;
    for (const unitId of units) {
      sent.length = 0;
      const got = await store.read(cells(EXPERIMENTS, unitId));
      expect(got, JSON.stringify(unitId)).toEqual(await table.read(cells(EXPERIMENTS, unitId)));
      found += got.filter((g) => g !== undefined).length;
      // The partition named: the one holding the unit's rows (the hash the database computes).
      const [q] = pageLoads(sent);
      const named = /LEFT JOIN (\S+) a ON/.exec(q!.text)![1]!;
      expect(named).toMatch(/^assignments_p[0-7]$/);
      const partition = home.get(unitId);
      if (partition) expect(named, JSON.stringify(unitId)).toBe(partition);
      // …planned as a plain table: no partitioned parent, no pruning.
      const plan = await partitionsTouched(db, q!.text, q!.values);
      expect(plan.planned).toEqual(new Set([named]));
    }
    expect(found).toBe(47 * 20 + 8 * 2 + 1); // 47 units in 20 experiments, 8 in two, an override of a unit stored nowhere
    // Several units at once: through the table itself, as before.
    sent.length = 0;
    await store.read([...cells([1, 2], "unit-77"), ...cells([1, 2], "unit-78")]);
    expect(pageLoads(sent)[0]!.text).toContain("LEFT JOIN assignments a ON");
  });

  it("reads the table itself when the partition it would name is gone, then learns the layout again", async () => {
    const { db: rec, sent } = recording(db);
    const errors: unknown[] = [];
    const store = new AssignmentStore(rec, { maxWaitMs: 0, onLayoutError: (e) => errors.push(e) });
    await store.partitionLayout!.refresh();
    const unitId = "unit-321";
    const { rows } = await db.query<{ p: string }>(`SELECT DISTINCT tableoid::regclass::text AS p FROM assignments WHERE unit_id = $1`, [
      unitId,
    ]);
    const partition = rows[0]!.p;
    const want = await new AssignmentStore(db, { partitionReads: false }).read(cells(EXPERIMENTS, unitId));
    expect(want.every((w) => w !== undefined)).toBe(true);
    // Renamed under the server (as if the table had been made again): the name it knows is gone.
    await db.query(`ALTER TABLE ${partition} RENAME TO moved_away`);
    try {
      expect(await store.read(cells(EXPERIMENTS, unitId))).toEqual(want);
      expect(pageLoads(sent).map((q) => /LEFT JOIN (\S+) a ON/.exec(q.text)![1])).toEqual([partition, "assignments"]);
      await store.partitionLayout!.refresh();
      sent.length = 0;
      expect(await store.read(cells(EXPERIMENTS, unitId))).toEqual(want);
      expect(pageLoads(sent)[0]!.text).toContain("LEFT JOIN moved_away a ON");
    } finally {
      await db.query(`ALTER TABLE moved_away RENAME TO ${partition}`);
    }
    expect(errors).toEqual([]);
  });

  it("an erasure of units reads and deletes in their partitions only", async () => {
    const units = ["unit-5", "unit-6"];
    const { rows: where } = await db.query<{ p: string }>(
      `SELECT DISTINCT tableoid::regclass::text AS p FROM assignments WHERE unit_id = ANY($1::text[])`,
      [units],
    );
    const { db: rec, sent } = recording(db);
    const erased = await new ErasureStore(rec).eraseUnits("user_id", units, { tokenName: "t", tokenRole: "admin", rpc: "EraseUnits" });
    expect(erased.assignments).toBe(40);
    // The statements as the store sent them, explained again (the rows are gone; the plan is what
    // matters): each reads or deletes in the units' partitions only.
    const touching = sent.filter((q) => /FROM assignments( a)? WHERE/.test(q.text));
    expect(touching).toHaveLength(2); // the experiments holding the units, and the DELETE
    for (const q of touching) {
      const plan = await partitionsTouched(db, q.text, q.values);
      expect([...plan.planned].sort()).toEqual(where.map((r) => r.p).sort());
      // Through the primary key (experiment, unit): nothing indexes a unit alone, and a partition
      // read whole would grow with the table.
      expect([...(await partitionsTouched(db, q.text, q.values, { seqScanOff: true })).readWhole]).toEqual([]);
    }
  });

  it("an export by experiment reads every partition through its primary key (no pruning: the key is the unit)", async () => {
    const { db: rec, sent } = recording(db);
    const page = await new TransferStore(rec).exportPage(3, "unit-5", 100);
    expect(page).toHaveLength(100);
    const plan = await partitionsTouched(db, sent[0]!.text, sent[0]!.values);
    expect(plan.read.size).toBe(8);
    expect(plan.nodes).toContain("Merge Append"); // ordered by unit id across partitions, no sort
    expect(plan.nodes).not.toContain("Seq Scan");
  });

  it("compares unit ids by their bytes (migration 15), keeping the table's triggers", async () => {
    const { rows } = await db.query<{ collation: string }>(
      `SELECT c.collname AS collation FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
        WHERE a.attrelid = 'assignments'::regclass AND a.attname = 'unit_id'`,
    );
    expect(rows).toEqual([{ collation: "C" }]);
    const { rows: triggers } = await db.query<{ name: string }>(
      `SELECT tgname AS name FROM pg_trigger WHERE tgrelid = 'assignments'::regclass AND NOT tgisinternal ORDER BY tgname`,
    );
    expect(triggers.map((t) => t.name)).toEqual(["assignment_events_deleted", "assignment_events_inserted", "assignment_events_updated"]);
    expect(await new TransferStore(db).partitionsByBytes()).toHaveLength(8);
  });

  it("an export (COPY) reads each partition in its index order, without a merge in the database, and sends the rows in unit id order", async () => {
    // Unit ids whose order by bytes differs from their order by UTF-16 code units (above U+FFFF
    // against U+E000–U+FFFF), escaped in COPY text (tab, newline, backslash), prefixes of others,
    // and non-ASCII letters.
    const awkward = ["\u{1F600}", "\uE000", "\uFFFD", "é", "Z", "a", "a\tb", "a\nb", "a\\b", "", " ", "\u00A0", "x\u{10000}", "x\uFFFF"];
    const ids = awkward.flatMap((w) => Array.from({ length: 40 }, (_, i) => `${w}${i}`));
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT 21, u, 1, 1, 1 FROM unnest($1::text[]) u`,
      [ids],
    );
    const copies: string[] = [];
    const spy = Object.create(db) as Database;
    Object.assign(spy, {
      bulkCopy: {
        async session() {
          const session = await db.bulkCopy.session();
          const copyTo = session.copyTo.bind(session);
          return Object.assign(session, {
            copyTo(sql: string) {
              copies.push(sql);
              return copyTo(sql);
            },
          });
        },
      },
    });
    const want = async (experimentId: number) =>
      (
        await db.query<{ u: string }>(`SELECT unit_id AS u FROM assignments WHERE experiment_id = $1 ORDER BY unit_id`, [experimentId])
      ).rows.map((r) => r.u);
    const exported = async (experimentId: number, batchSize: number) => {
      const units: string[] = [];
      const sizes: number[] = [];
      for await (const batch of new TransferStore(spy).exportBatches(experimentId, batchSize)) {
        sizes.push(batch.length);
        units.push(...batch.map((r) => r.unitId));
      }
      // Full batches but the last, which is not empty.
      expect(sizes.slice(0, -1).every((n) => n === batchSize)).toBe(true);
      expect(sizes.every((n) => n > 0 && n <= batchSize)).toBe(true);
      return units;
    };
    // 560 awkward ids; 2,000 units of 8 partitions (one page: pages are about 40,000 rows); none.
    expect(await exported(21, 7)).toEqual(await want(21));
    expect(new Set(await want(21))).toEqual(new Set(ids));
    expect(await exported(3, 1000)).toEqual(await want(3));
    expect(await exported(99, 10)).toEqual([]);
    // Small pages (pageRows 100: about 50 rows of each partition a page): many bounds.
    const partitions = (await new TransferStore(db).partitionsByBytes())!;
    for (const experimentId of [21, 3]) {
      const units: string[] = [];
      const sizes: number[] = [];
      for await (const batch of exportByPartitions(db.bulkCopy, experimentId, 33, partitions, 100)) {
        sizes.push(batch.length);
        units.push(...batch.map((r) => r.unitId));
      }
      expect(units).toEqual(await want(experimentId));
      expect(sizes.slice(0, -1).every((n) => n === 33)).toBe(true);
    }
    const statement = copies
      .at(-1)!
      .replace(/^COPY \(/, "")
      .replace(/\) TO STDOUT$/, "");
    const plan = await partitionsTouched(db, statement);
    expect(plan.read.size).toBe(8);
    expect(plan.nodes).toContain("Append");
    expect(plan.nodes).not.toContain("Merge Append");
    expect(plan.nodes).not.toContain("Sort");
    expect(plan.nodes).not.toContain("Seq Scan");
  });

  it("the server's merge of the partitions' pages sends every row once, whole and in byte order, wherever the pages end", async () => {
    // Ids escaped in COPY text by PostgreSQL (backslash, \b \f \n \r \t \v: the escape sorts as a
    // backslash, the character it stands for below every letter), a control character it does not
    // escape, ids whose UTF-16 order differs from their code point order, ids that are prefixes of
    // others (and of one another's escapes), and long ones (a page of several decoded pieces).
    const stems = [
      "a",
      "a\u0001",
      "a\bz",
      "a\u000bz",
      "a\fz",
      "a\rz",
      "a\\",
      "a\\\\b",
      "A",
      "\u{1F600}x",
      "\uE000x",
      "\uFFFDx",
      "ü",
      "u\u0308",
    ];
    const long = "p".repeat(300);
    const ids = [
      ...stems.flatMap((s) => Array.from({ length: 30 }, (_, i) => `${s}${i}`)),
      ...stems,
      ...Array.from({ length: 12 }, (_, i) => "a".repeat(i + 2)),
      ...Array.from({ length: 400 }, (_, i) => `${long}${i}`),
      // Ids alike for many characters after what a page's ids share: their sort keys are equal,
      // and they are compared as strings.
      ...Array.from({ length: 200 }, (_, i) => `t${i % 2}-same-prefix-${i}`),
    ];
    expect(new Set(ids).size).toBe(ids.length);
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT 30, u, i % 5, 1000000000000 + i, 1 + i % 2 FROM unnest($1::text[]) WITH ORDINALITY AS t(u, i)`,
      [ids],
    );
    // All of an experiment's rows in one partition (the other seven empty): each page's bound is
    // that partition's last row.
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT 31, 'solo-' || u, 1, 1, 1 FROM generate_series(1, 1000) u`,
    );
    await db.query(
      `DELETE FROM assignments WHERE experiment_id = 31
          AND tableoid <> (SELECT tableoid FROM assignments WHERE experiment_id = 31 AND unit_id = 'solo-1')`,
    );
    // Three rows: most partitions empty.
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES (32, 'x', 0, 1, 1), (32, 'x\u00e9', 1, 2, 1), (32, 'xy', 1, 3, 2)`,
    );
    // Ids not ASCII (nor escaped) alike for more than a sort key's six bytes after what a page's
    // ids share: equal keys, compared byte by byte.
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT 33, chr(97 + c) || '-ü-same-prefix-' || i, i % 3, 1, 1 FROM generate_series(0, 25) c, generate_series(0, 19) i`,
    );
    const partitions = (await new TransferStore(db).partitionsByBytes())!;
    expect(partitions).toHaveLength(8);
    const { rows: solo } = await db.query<{ n: number; parts: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT tableoid)::int AS parts FROM assignments WHERE experiment_id = 31`,
    );
    expect(solo[0]!.parts).toBe(1);
    expect(solo[0]!.n).toBeGreaterThan(60);
    for (const experimentId of [30, 31, 32, 33]) {
      const { rows } = await db.query<{ unitId: string; variant: number; source: number; version: string }>(
        `SELECT unit_id AS "unitId", variant, source, version::text FROM assignments WHERE experiment_id = $1 ORDER BY unit_id`,
        [experimentId],
      );
      // By their UTF-8 bytes: what the server's merge must reproduce.
      const byBytes = [...rows].sort((x, y) => Buffer.compare(Buffer.from(x.unitId), Buffer.from(y.unitId)));
      expect(rows.map((r) => r.unitId)).toEqual(byBytes.map((r) => r.unitId));
      // Pages of 2 rows of each partition (a bound every few rows), 25, and all in one page.
      for (const pageRows of [8, 100, 10_000]) {
        const got: typeof rows = [];
        const sizes: number[] = [];
        for await (const batch of exportByPartitions(db.bulkCopy, experimentId, 7, partitions, pageRows)) {
          sizes.push(batch.length);
          got.push(...batch);
        }
        expect(got, `experiment ${experimentId}, pages of ${pageRows}`).toEqual(rows);
        expect(sizes.slice(0, -1).every((n) => n === 7)).toBe(true);
      }
    }
  });

  it("a page the database sends in another order, or whose range holds far more rows than a page, is exported whole and in order all the same", async () => {
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT 35, 'o-' || u, u % 3, u, 1 FROM generate_series(1, 3000) u`,
    );
    // Every row of experiment 36 but a few in one partition: a page whose bound comes from another
    // partition holds far more rows than its size.
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT 36, 'k-' || u, 1, 1, 1 FROM generate_series(1, 16000) u`,
    );
    await db.query(
      `DELETE FROM assignments WHERE experiment_id = 36 AND unit_id NOT IN ('k-1', 'k-2', 'k-3')
          AND tableoid <> (SELECT tableoid FROM assignments WHERE experiment_id = 36 AND unit_id = 'k-1000')`,
    );
    const statements: string[] = [];
    /** Sessions whose COPYs read the partitioned table in a random order (`shuffled`). */
    const bulk = (shuffled: boolean) => ({
      async session() {
        const session = await db.bulkCopy.session();
        const copyTo = session.copyTo.bind(session);
        const query = session.query.bind(session);
        return Object.assign(session, {
          copyTo(sql: string) {
            statements.push(sql);
            return copyTo(
              shuffled ? sql.replaceAll("FROM assignments WHERE", "FROM (SELECT * FROM assignments ORDER BY random()) a WHERE") : sql,
            );
          },
          query(sql: string, values?: unknown[]) {
            statements.push(sql);
            return query(sql, values);
          },
        });
      },
    });
    const partitions = (await new TransferStore(db).partitionsByBytes())!;
    for (const [experimentId, shuffled] of [
      [35, true],
      [36, false],
      [36, true],
    ] as const) {
      statements.length = 0;
      const { rows } = await db.query<{ unitId: string; variant: number; source: number; version: string }>(
        `SELECT unit_id AS "unitId", variant, source, version::text FROM assignments WHERE experiment_id = $1 ORDER BY unit_id`,
        [experimentId],
      );
      const got: typeof rows = [];
      for await (const batch of exportByPartitions(bulk(shuffled), experimentId, 50, partitions, 100)) got.push(...batch);
      expect(got, `experiment ${experimentId}${shuffled ? ", shuffled" : ""}`).toEqual(rows);
      // Experiment 36's pages were read again up to the bound no partition passes.
      if (experimentId === 36) expect(statements.some((sql) => sql.includes("min(b)"))).toBe(true);
    }
  });

  it("an export reads the partitions' pages at most two ahead of a reader that stalls, the first one small", async () => {
    await db.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT 40, 'r-' || u, 1, 1, 1 FROM generate_series(1, 2000) u`,
    );
    const started: string[] = [];
    let finished = 0;
    /** The rows each probe for a page's bound counted (its OFFSET + 1). */
    const probes: number[] = [];
    const bulk = {
      async session() {
        const session = await db.bulkCopy.session();
        const copyTo = session.copyTo.bind(session);
        const query = session.query.bind(session);
        return Object.assign(session, {
          async *copyTo(sql: string) {
            started.push(sql);
            yield* copyTo(sql);
            finished++;
          },
          query(sql: string, values?: unknown[]) {
            if (sql.includes("OFFSET")) probes.push(Number(values![1]) + 1);
            return query(sql, values);
          },
        });
      },
    };
    const partitions = (await new TransferStore(db).partitionsByBytes())!;
    // Pages of 50 rows of each partition (8 partitions, pageRows 100: pages of four times that), the
    // first of 13.
    const pages = exportByPartitions(bulk, 40, 7, partitions, 100);
    const units = ((await pages.next()).value as ExportedRow[]).map((r) => r.unitId);
    for (let waited = 0; finished < 3 && waited < 20_000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    // The page being merged and two read ahead: no more while the reader stalls.
    expect(finished).toBe(3);
    expect(started).toHaveLength(3);
    // Each page's bound: the 13th (then the 50th) unit id after its cursor in one partition, asked
    // for while the page before is read: one more than the pages.
    expect(probes).toEqual([13, 50, 50, 50]);
    for await (const batch of pages) units.push(...batch.map((r) => r.unitId));
    const { rows } = await db.query<{ u: string }>(`SELECT unit_id AS u FROM assignments WHERE experiment_id = 40 ORDER BY unit_id`);
    expect(units).toEqual(rows.map((r) => r.u));
    expect(started.length).toBeGreaterThan(2000 / 400);
  });
});

describe("compareCodePoints", () => {
  it("orders strings as their UTF-8 bytes do (PostgreSQL's C collation)", () => {
    const alphabet = [
      "a",
      "b",
      "Z",
      "é",
      "\u00A0",
      "\u07FF",
      "\u0800",
      "\uD7FF",
      "\uE000",
      "\uFFFD",
      "\uFFFF",
      "\u{10000}",
      "\u{1F600}",
      "\u{10FFFF}",
      "",
    ];
    const strings: string[] = [];
    for (const a of alphabet) for (const b of alphabet) for (const c of ["", "a", "\uFFFF", "\u{1F600}"]) strings.push(a + b + c);
    const byBytes = [...strings].sort((x, y) => Buffer.compare(Buffer.from(x, "utf8"), Buffer.from(y, "utf8")));
    expect([...strings].sort(compareCodePoints)).toEqual(byBytes);
    expect([...strings].sort()).not.toEqual(byBytes); // UTF-16 order alone would not do
  });
});

describe("an installation partitioned before migration 15 (unit ids in the database's collation)", () => {
  it("keeps its table and rows, and exports through the database's merge, in the same order", async () => {
    const { fresh, db } = await pgDatabase();
    const client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    dropped.push(() => client.end());
    await client.query(`SELECT set_config('assignment.partitions', '4', false)`);
    await runner({
      dbClient: client as never,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "schema_migrations",
      count: 14,
      log: () => {},
    });
    await client.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT 1, 'u' || u, u % 2, 1, 1 FROM generate_series(1, 3000) u`,
    );
    const before = (await client.query(CHECKSUM)).rows[0];
    await runMigrations(client);
    expect((await client.query(CHECKSUM)).rows[0]).toEqual(before);
    const { rows } = await client.query<{ collation: string }>(
      `SELECT c.collname AS collation FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
        WHERE a.attrelid = 'assignments'::regclass AND a.attname = 'unit_id'`,
    );
    expect(rows).toEqual([{ collation: "default" }]);
    const transfers = new TransferStore(db);
    expect(await transfers.partitionsByBytes()).toBeUndefined();
    // Its collation (deterministic, as every collation PostgreSQL makes by default) hashes the
    // bytes as C does: page loads name the unit's partition here too, and answer the same.
    const layout = (await readPartitionLayout(db))!;
    const { rows: homes } = await client.query<{ u: string; p: string }>(
      `SELECT unit_id AS u, tableoid::regclass::text AS p FROM assignments WHERE experiment_id = 1`,
    );
    expect(homes).toHaveLength(3000);
    for (const h of homes) expect(layout.partitionOf(h.u), h.u).toBe(h.p);
    const units: string[] = [];
    for await (const batch of transfers.exportBatches(1, 1000)) units.push(...batch.map((r) => r.unitId));
    const want = (await client.query<{ u: string }>(`SELECT unit_id AS u FROM assignments WHERE experiment_id = 1 ORDER BY unit_id`)).rows;
    expect(units).toEqual(want.map((r) => r.u));
    expect(units).toHaveLength(3000);
  });
});

/** Rows as text, ordered: what a checksum of the whole table is taken over. */
const CHECKSUM = `SELECT md5(string_agg(experiment_id || ',' || unit_id || ',' || variant || ',' || version || ',' || source || ',' || assigned_at::text, ';' ORDER BY experiment_id, unit_id)) AS sum, count(*)::int AS n FROM assignments`;

/** Migrations 1 to 6: the schema before partitioning. */
async function oldSchema(client: MigrationClient): Promise<void> {
  await runner({
    dbClient: client as never,
    dir: MIGRATIONS_DIR,
    direction: "up",
    migrationsTable: "schema_migrations",
    count: 6,
    log: () => {},
  });
}

describe("an installation with rows, upgraded in place (PostgreSQL)", () => {
  it("copies in batches while rows are inserted, changed and erased, and swaps: the table then holds exactly what the old one would", async () => {
    const { fresh, db } = await pgDatabase();
    const client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    dropped.push(() => client.end());
    await oldSchema(client);
    await client.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source, assigned_at)
       SELECT e, 'u' || u, (u + e) % 3, 1, 1, '2026-01-01'::timestamptz + u * interval '1 s'
         FROM generate_series(1, 5) e, generate_series(1, 3000) u`,
    );
    await runMigrations(client, { assignmentPartitions: 4 });
    expect(await partitionMovePending(db)).toBe(true);
    // The table's own triggers (the event log's, made by a later migration on the old table).
    const triggers = async () =>
      (
        await client.query<{ name: string }>(
          `SELECT tgname AS name FROM pg_trigger WHERE tgrelid = 'assignments'::regclass AND NOT tgisinternal
              AND tgname NOT LIKE 'assignments_mirror%' ORDER BY tgname`,
        )
      ).rows.map((r) => r.name);
    const triggersBefore = await triggers();
    expect(triggersBefore).toContain("assignment_events_inserted");
    // Until the swap the old table is the one in use (not partitioned).
    const kind = async () =>
      (await db.query<{ k: string }>(`SELECT relkind::text AS k FROM pg_class WHERE oid = 'assignments'::regclass`)).rows[0]!.k;
    expect(await kind()).toBe("r");
    expect(await assignmentPartitionCount(db)).toBe(4); // the table being filled
    // Its partitions (assignments_p0…) belong to the table being filled, not to the table in use:
    // page loads read the table in use itself.
    expect(await readPartitionLayout(db)).toBeUndefined();
    const { db: rec, sent } = recording(db);
    const store = new AssignmentStore(rec, { maxWaitMs: 0 });
    await store.partitionLayout!.refresh();
    const pageLoad = async () => {
      sent.length = 0;
      const got = await store.read([1, 2, 3, 4, 5].map((experimentId) => ({ experimentId, unitId: "u1234" })));
      expect(got.every((g) => g !== undefined)).toBe(true);
      return /LEFT JOIN (\S+) a ON/.exec(pageLoads(sent)[0]!.text)![1];
    };
    expect(await pageLoad()).toBe("assignments");
    // An import COPYs into the partitioned table only once it is the one in use.
    expect(await partitionRoute(db)).toBeUndefined();

    // Batches of 500, each followed by changes made by "servers": behind the cursor, ahead of
    // it, and across the whole table.
    let step = 0;
    for (;;) {
      const s = await moveStep(db, 500);
      if (s.state === "done") break;
      expect(s.state).toBe("copied");
      step++;
      await db.query(
        `INSERT INTO assignments (experiment_id, unit_id, variant, version, source, assigned_at) VALUES ($1, $2, 1, 2, 1, '2026-02-01')`,
        [(step % 5) + 1, `new-${step}`],
      );
      await db.query(`UPDATE assignments SET variant = 2, version = 9, source = 2 WHERE unit_id = $1`, [`u${step * 97}`]);
      await db.query(`DELETE FROM assignments WHERE unit_id = $1`, [`u${step * 131 + 1}`]);
      // A unit erased, then assigned again: the new row counts, the old one must not come back.
      await db.query(`DELETE FROM assignments WHERE unit_id = $1`, [`u${3000 - step}`]);
      await db.query(
        `INSERT INTO assignments (experiment_id, unit_id, variant, version, source, assigned_at) VALUES (1, $1, 0, 3, 1, '2026-03-01')`,
        [`u${3000 - step}`],
      );
    }
    expect(step).toBe(30); // 15,000 rows in batches of 500
    expect(await kind()).toBe("p");
    expect(await partitionMovePending(db)).toBe(false);
    // Swapped: once the layout is read again, page loads name the unit's partition.
    expect(await pageLoad()).toBe("assignments");
    await store.partitionLayout!.refresh();
    const { rows: home } = await db.query<{ p: string }>(
      `SELECT DISTINCT tableoid::regclass::text AS p FROM assignments WHERE unit_id = 'u1234'`,
    );
    expect(await pageLoad()).toBe(home[0]!.p);

    // What the old table would hold: the same rows and changes, computed in SQL on a plain table.
    await client.query(`CREATE TABLE expected (LIKE assignments)`);
    await client.query(
      `INSERT INTO expected SELECT e, 'u' || u, (u + e) % 3, 1, 1, '2026-01-01'::timestamptz + u * interval '1 s'
         FROM generate_series(1, 5) e, generate_series(1, 3000) u`,
    );
    for (let k = 1; k <= step; k++) {
      await client.query(`INSERT INTO expected VALUES ($1, $2, 1, 2, 1, '2026-02-01')`, [(k % 5) + 1, `new-${k}`]);
      await client.query(`UPDATE expected SET variant = 2, version = 9, source = 2 WHERE unit_id = $1`, [`u${k * 97}`]);
      await client.query(`DELETE FROM expected WHERE unit_id = $1`, [`u${k * 131 + 1}`]);
      await client.query(`DELETE FROM expected WHERE unit_id = $1`, [`u${3000 - k}`]);
      await client.query(`INSERT INTO expected VALUES (1, $1, 0, 3, 1, '2026-03-01')`, [`u${3000 - k}`]);
    }
    const want = (await client.query(CHECKSUM.replace("FROM assignments", "FROM expected"))).rows[0];
    const got = (await client.query(CHECKSUM)).rows[0];
    expect(got.n).toBeGreaterThan(14_000);
    expect(got).toEqual(want);
    // The leftovers of the upgrade are gone; the primary key has its usual name.
    const { rows: left } = await client.query(
      `SELECT to_regclass('assignments_partitioned') AS a, to_regclass('assignments_partitioning') AS b,
              to_regprocedure('assignments_mirror()') AS c, to_regclass('assignments_pkey') IS NOT NULL AS pkey`,
    );
    expect(left).toEqual([{ a: null, b: null, c: null, pkey: true }]);
    // The swapped-in table has the old one's triggers, and they fire: a new row reaches the outbox.
    expect(await triggers()).toEqual(triggersBefore);
    const outbox = async () =>
      Number((await client.query(`SELECT count(*) AS n FROM assignment_outbox WHERE unit_id = 'after-swap'`)).rows[0].n);
    expect(await outbox()).toBe(0);
    await db.query(`INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES (1, 'after-swap', 0, 1, 1)`);
    expect(await outbox()).toBe(1);
    // Its partitions have the event log's triggers (migration 17, made before the swap), so an
    // import may COPY straight into them.
    expect((await partitionRoute(db))?.names).toEqual([0, 1, 2, 3].map((r) => `assignments_p${r}`));
  });
});

describe("the embedded database (PGlite, PostgreSQL 17)", () => {
  it("installs partitioned, and upgrades a table with rows in place", async () => {
    const fresh = await PgliteDatabase.open({ dataDir: "memory://" });
    dropped.push(() => fresh.close());
    await fresh.migrate({ assignmentPartitions: 3 });
    const { rows } = await fresh.query<{ partitions: number }>(
      `SELECT count(*)::int AS partitions FROM pg_inherits WHERE inhparent = 'assignments'::regclass`,
    );
    expect(rows).toEqual([{ partitions: 3 }]);

    const old = await PgliteDatabase.open({ dataDir: "memory://" });
    dropped.push(() => old.close());
    const client: MigrationClient = {
      async query(t: string | { text: string; values?: unknown[] }, v?: unknown[]) {
        const text = typeof t === "string" ? t : t.text;
        const values = typeof t === "string" ? v : (t.values ?? v);
        if (values && values.length > 0) return old.pg.query(text, values);
        const r = await old.pg.exec(text);
        return r[r.length - 1] ?? { rows: [] };
      },
    };
    await oldSchema(client);
    await old.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT e, 'u' || u, u % 2, 1, 1 FROM generate_series(1, 3) e, generate_series(1, 2000) u`,
    );
    const before = (await old.query(CHECKSUM)).rows[0];
    await old.migrate({ assignmentPartitions: 4 });
    expect(await partitionMovePending(old)).toBe(true);
    // The first batch fails (as when the database is unreachable for a moment): the move reports
    // it, waits and goes on, instead of stopping until the next start.
    let failures = 1;
    const flaky = Object.create(old) as Database;
    flaky.transaction = (fn) => (failures-- > 0 ? Promise.reject(new Error("connection lost")) : old.transaction(fn));
    const errors: unknown[] = [];
    expect(await runPartitionMove(flaky, { batchRows: 1000, onError: (e) => errors.push(e), retryMs: 10 })).toBe(true);
    expect(errors.map(String)).toEqual(["Error: connection lost"]);
    expect((await old.query(CHECKSUM)).rows[0]).toEqual(before);
    const { rows: parts } = await old.query<{ partitions: number }>(
      `SELECT count(*)::int AS partitions FROM pg_inherits WHERE inhparent = 'assignments'::regclass`,
    );
    expect(parts).toEqual([{ partitions: 4 }]);
  }, 180_000); // two embedded databases, each through every migration: slow on a busy machine
});

describe("the partition layout read from the catalog (readPartitionLayout)", () => {
  let client: pg.Client;
  beforeAll(async () => {
    const { fresh } = await pgDatabase();
    client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    dropped.push(() => client.end());
  });
  const remake = async (sql: string) => {
    await client.query(`DROP TABLE IF EXISTS assignments CASCADE`);
    await client.query(sql);
  };
  const ids = [...Array.from({ length: 2000 }, (_, i) => `id-${i}`), "", "é", "\u{1F600}", "日本語"];

  it("follows moduli that differ between partitions, as the database does", async () => {
    await remake(`CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text COLLATE "C" NOT NULL) PARTITION BY HASH (unit_id)`);
    for (const [m, r] of [
      [2, 0],
      [4, 1],
      [8, 3],
      [8, 7],
    ])
      await client.query(`CREATE TABLE "odd part ${m}-${r}" PARTITION OF assignments FOR VALUES WITH (MODULUS ${m}, REMAINDER ${r})`);
    await client.query(`INSERT INTO assignments SELECT 1, unnest($1::text[])`, [ids]);
    const layout = (await readPartitionLayout(client))!;
    const { rows } = await client.query<{ u: string; p: string }>(`SELECT unit_id AS u, tableoid::regclass::text AS p FROM assignments`);
    expect(rows).toHaveLength(ids.length);
    for (const r of rows) expect(layout.partitionOf(r.u), r.u).toBe(r.p);
    expect(new Set(rows.map((r) => r.p)).size).toBe(4);
    expect(rows[0]!.p).toMatch(/^"odd part/); // a name that needs quoting comes quoted
  });

  it("is undefined for a table it does not understand: unpartitioned, by another key, or in a non-deterministic collation", async () => {
    await remake(`CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text NOT NULL)`);
    expect(await readPartitionLayout(client)).toBeUndefined();
    await remake(`CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text NOT NULL) PARTITION BY HASH (experiment_id)`);
    await client.query(`CREATE TABLE a0 PARTITION OF assignments FOR VALUES WITH (MODULUS 1, REMAINDER 0)`);
    expect(await readPartitionLayout(client)).toBeUndefined();
    await remake(`CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text NOT NULL) PARTITION BY LIST (unit_id)`);
    await client.query(`CREATE TABLE a0 PARTITION OF assignments FOR VALUES IN ('x')`);
    expect(await readPartitionLayout(client)).toBeUndefined();
    await client.query(`CREATE COLLATION IF NOT EXISTS any_case (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`);
    await remake(
      `CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text COLLATE any_case NOT NULL) PARTITION BY HASH (unit_id)`,
    );
    await client.query(`CREATE TABLE a0 PARTITION OF assignments FOR VALUES WITH (MODULUS 2, REMAINDER 0)`);
    await client.query(`CREATE TABLE a1 PARTITION OF assignments FOR VALUES WITH (MODULUS 2, REMAINDER 1)`);
    expect(await readPartitionLayout(client)).toBeUndefined();
    // The same in the C collation: understood. A unit whose remainder has no partition yet is in
    // none (the table itself is read: it answers nothing).
    await remake(`CREATE TABLE assignments (experiment_id int NOT NULL, unit_id text COLLATE "C" NOT NULL) PARTITION BY HASH (unit_id)`);
    await client.query(`CREATE TABLE a0 PARTITION OF assignments FOR VALUES WITH (MODULUS 2, REMAINDER 0)`);
    const half = (await readPartitionLayout(client))!;
    const some = ids.map((u) => half.partitionOf(u));
    expect(new Set(some)).toEqual(new Set(["a0", undefined]));
    await client.query(`CREATE TABLE a1 PARTITION OF assignments FOR VALUES WITH (MODULUS 2, REMAINDER 1)`);
    expect((await readPartitionLayout(client))?.partitionOf("x")).toMatch(/^a[01]$/);
  });
});
