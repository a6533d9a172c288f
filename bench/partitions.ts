/**
 * `npm run bench:partitions`: the stores' own statements (src/store) on the partitioned assignments
 * table (migration 7: hash by unit id, ASSIGNMENT_PARTITIONS) against an unpartitioned one, in the
 * same run, on the same PostgreSQL: two fresh databases at the same schema (every migration, so the
 * same event-log triggers fire on both), the second with assignments made again as one plain table
 * of the same columns, primary key and triggers. Both are filled alike; each operation runs on both
 * in alternating order (A B, then B A), ROUNDS times; the median rate of each is reported, with the
 * ratio partitioned / unpartitioned (target ≥ 0.9), and the CPU each row cost the database backends
 * (from /proc, when PostgreSQL runs on this machine) and this process, which a busy machine
 * disturbs far less than the rates, and the time this process's garbage collector took. Each
 * target's operations run in a worker thread of its own (TargetWorker): a heap and compiled code of
 * its own, as a server's, which serves one kind of table. The store level is measured, not gRPC:
 * what differs between the two is the database's work, which the transport would dilute.
 * Then the in-place upgrade (src/store/partition-move.ts) of a third database at the schema of
 * migrations 1 to 6: seconds per million rows. Results go to stdout as Markdown; progress to stderr.
 *
 * Environment:
 *   DATABASE_URL                 PostgreSQL (default local); needs CREATE DATABASE
 *   BENCH_PART_UNITS             units per experiment in the initial fill (50000; x20 experiments)
 *   BENCH_PART_ROUNDS            rounds (7)
 *   BENCH_PART_UPGRADE           0 skips the in-place upgrade (default 1)
 *   BENCH_PART_STATEMENTS        samples of the page-load statement timed alone, each way (2000; 0 skips them)
 *   ASSIGNMENT_PARTITIONS        partitions of the partitioned database (16)
 *   BENCH_PART_ONLY              only the operations whose names match this regular expression
 *                                (case-insensitive; e.g. "^import|^export"; default all)
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { Source } from "../gen/ts/assignment/v1/types_pb.js";
import { Cleanup } from "../harness/cleanup.js";
import { createDatabase } from "../harness/databases.js";
import { AssignmentStore, readCells } from "../src/store/assignment-store.js";
import { exportByCopy } from "../src/store/copy-export.js";
import { MIGRATIONS_DIR, runMigrations } from "../src/store/migrations.js";
import { readPartitionLayout } from "../src/store/partition-layout.js";
import { runPartitionMove } from "../src/store/partition-move.js";
import { PgDatabase } from "../src/store/pg-database.js";
import { TransferStore } from "../src/store/transfer-store.js";
import { log, probePostgres } from "./infra.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const UNITS = Number(env.BENCH_PART_UNITS ?? 50_000);
const ROUNDS = Number(env.BENCH_PART_ROUNDS ?? 7);
const UPGRADE = env.BENCH_PART_UPGRADE !== "0";
const PARTITIONS = Number(env.ASSIGNMENT_PARTITIONS ?? 16);
const EXPERIMENTS = 20;
const IMPORT_EXPERIMENT = EXPERIMENTS + 1;
/** Experiments with no stored rows, one per round of "import into a new experiment" (after the others). */
const NEW_IMPORT_EXPERIMENT = IMPORT_EXPERIMENT + 1;
const IN_FLIGHT = 8;
const READS = 3_000;
const INSERT_UNITS = 1_500;
const IMPORT_ROWS = 100_000;
/** Experiments exported one after the other in one sample: enough rows (600,000) that a sample lasts
 * about half a second and its CPU, counted in clock ticks of 10 ms, is measured to a few percent
 * (4 were enough when an export ran at a third of today's rate). */
const EXPORTS = 12;
const ONLY = env.BENCH_PART_ONLY ? new RegExp(env.BENCH_PART_ONLY, "i") : undefined;

interface Target {
  name: string;
  /** application_name of its pool's connections, to find their backends. */
  app: string;
  url: string;
  client: pg.Client;
  db: PgDatabase;
  store: AssignmentStore;
  /** The same reads through the table itself, never naming a partition (the statement before partition-layout.ts: the
   * partitioned table's parent planned and pruned at each statement). */
  tableStore: AssignmentStore;
  transfers: TransferStore;
  /** Where its operations run (see TargetWorker). */
  worker: TargetWorker;
}

type Schema = "partitioned" | "unpartitioned" | "before-partitioning";

async function setUp(cleanup: Cleanup, name: string, schema: Schema): Promise<Target> {
  const fresh = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${fresh.name}`, fresh.drop);
  const client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
  cleanup.add("disconnect", () => client.end());
  if (schema === "before-partitioning")
    await runner({
      dbClient: client as never,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "schema_migrations",
      count: 6,
      log: () => {},
    });
  else await runMigrations(client, { assignmentPartitions: PARTITIONS });
  if (schema === "unpartitioned") {
    // The same table, unpartitioned: same columns (collations included), primary key and triggers
    // (the event log's outbox, migration 8), so that partitioning is the only difference.
    await client.query("BEGIN");
    const { rows: triggers } = await client.query<{ def: string }>(
      `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = 'assignments'::regclass AND NOT tgisinternal`,
    );
    await client.query(`CREATE TABLE assignments_plain (LIKE assignments INCLUDING ALL)`);
    await client.query(`DROP TABLE assignments`);
    await client.query(`ALTER TABLE assignments_plain RENAME TO assignments`);
    await client.query(`ALTER INDEX assignments_plain_pkey RENAME TO assignments_pkey`);
    for (const t of triggers) await client.query(t.def);
    await client.query("COMMIT");
  }
  const variants = JSON.stringify([
    { id: 0, key: "a", weight: 5000 },
    { id: 1, key: "b", weight: 5000 },
  ]);
  for (let e = 1; e < NEW_IMPORT_EXPERIMENT + ROUNDS; e++) {
    await client.query(`INSERT INTO salts VALUES ($1, $2)`, [`e${e}`, `experiment:e${e}`]);
    await client.query(
      `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status) VALUES ($1, $1, 'user_id', 1, $2, 10000, 2)`,
      [`e${e}`, variants],
    );
  }
  await client.query(
    `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
     SELECT e, 'unit-' || u, u % 2, 1, 1 FROM generate_series(1, ${EXPERIMENTS}) e, generate_series(0, ${UNITS - 1}) u`,
  );
  // Both alike: the fill's outbox rows gone (no sequencer runs here), the table vacuumed (visibility
  // map and hint bits) and analyzed.
  if (schema !== "before-partitioning") await client.query(`TRUNCATE assignment_outbox, assignment_outbox_tx`);
  await client.query(`VACUUM ANALYZE assignments`);
  const app = `bench-partitions-${fresh.name}`;
  const db = new PgDatabase({ url: fresh.url, max: IN_FLIGHT + 2, applicationName: app });
  cleanup.add("close pool", () => db.close());
  const store = new AssignmentStore(db);
  // The partition layout known before the first read, as it is a few seconds after a server starts.
  await store.partitionLayout?.refresh();
  const tableStore = new AssignmentStore(db, { partitionReads: false });
  const worker = new TargetWorker({ name, app, url: fresh.url });
  cleanup.add("stop worker", () => worker.close());
  return { name, app, url: fresh.url, client, db, store, tableStore, transfers: new TransferStore(db), worker };
}

/** What a worker needs to reach its target. */
interface WorkerTarget {
  name: string;
  app: string;
  url: string;
}

/** A target's own stores, as a worker makes them. */
async function workerStores(w: WorkerTarget): Promise<{ target: Target; close: () => Promise<void> }> {
  const db = new PgDatabase({ url: w.url, max: IN_FLIGHT + 2, applicationName: w.app });
  const store = new AssignmentStore(db);
  await store.partitionLayout?.refresh();
  const tableStore = new AssignmentStore(db, { partitionReads: false });
  // Operations use the stores only (client and worker are the main thread's).
  const target = { ...w, db, store, tableStore, transfers: new TransferStore(db) } as unknown as Target;
  return { target, close: () => db.close() };
}

/**
 * A worker thread that runs one target's operations, each target its own: a V8 heap and compiled
 * code of its own, as a server has, which runs against one kind of table. Run in one thread, the
 * two exports' paths shared one heap and the feedback of shared code (the COPY stream, its
 * parsing): whichever ran second inherited the other's garbage, and which of the two was slowed by
 * that changed from run to run (the same build measured the partitioned export at 0.72× of the
 * unpartitioned one in a whole run and at 1.3× in a run of page loads and exports: its bench
 * process CPU 0.8 against 0.4 ms per 1,000 rows in the one, 0.4 against 0.7–0.9 in the other).
 */
class TargetWorker {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: WorkerResult) => void; reject: (e: Error) => void }>();

  constructor(target: WorkerTarget) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: target });
    this.worker.on("message", (m: { id: number } & ({ result: WorkerResult } | { error: string })) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if ("error" in m) p?.reject(new Error(m.error));
      else p?.resolve(m.result);
    });
    const fail = (err: Error) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on("error", fail);
    // A worker that ended (terminated, or its thread gone) answers nothing more.
    this.worker.on("exit", (code) => fail(new Error(`${target.name}: its worker exited (${code})`)));
  }

  run(op: string, round: number): Promise<WorkerResult> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, round });
    });
  }

  async close(): Promise<void> {
    await this.run("", -1).catch(() => {});
    await this.worker.terminate();
  }
}

/** An operation run by a worker: how many of its unit it did, and the worker's garbage collection
 * meanwhile (ms). */
interface WorkerResult {
  units: number;
  gcMs: number;
}

/** The worker's side of TargetWorker: runs each operation asked for; op "" closes its stores. */
async function serveWorker(w: WorkerTarget): Promise<void> {
  const { target, close } = await workerStores(w);
  parentPort!.on("message", async (m: { id: number; op: string; round: number }) => {
    try {
      if (m.op === "") {
        await close();
        parentPort!.postMessage({ id: m.id, result: { units: 0, gcMs: 0 } });
        return;
      }
      const gc0 = gcMs;
      const units = await OPERATIONS[m.op]!.run(target, m.round);
      // Entries arrive after the collection: a turn of the event loop takes them in.
      await new Promise((resolve) => setImmediate(resolve));
      parentPort!.postMessage({ id: m.id, result: { units, gcMs: gcMs - gc0 } });
    } catch (err) {
      parentPort!.postMessage({ id: m.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
}

/** CPU time (ms) so far of each backend of the target's pool, by pid; empty when PostgreSQL's
 * processes cannot be read (another machine). */
async function backendCpu(admin: pg.Client, t: Target): Promise<Map<number, number>> {
  const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [t.app]);
  const tick = 1000 / CLOCK_TICKS;
  const cpu = new Map<number, number>();
  for (const { pid } of rows) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      cpu.set(pid, (Number(fields[11]) + Number(fields[12])) * tick); // utime + stime
    } catch {
      // not this machine's process
    }
  }
  return cpu;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Stores INSERT_UNITS new units (named by `unitId`) in every experiment, IN_FLIGHT at a time, as
 * page loads do; the rows stored. */
async function insertUnits(t: Target, unitId: (k: number) => string): Promise<number> {
  await concurrently(INSERT_UNITS, async (k) => {
    const u = unitId(k);
    const out = await t.store.insert(
      experimentIds.map((experimentId) => ({ experimentId, unitId: u, variantId: 1, version: 1n, source: Source.HASH })),
    );
    if (!out.every((o) => o.won)) throw new Error(`${u}: not new in ${t.name}`);
  });
  return INSERT_UNITS * EXPERIMENTS;
}

/** Runs `n` tasks, `IN_FLIGHT` at a time. */
async function concurrently(n: number, task: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

const experimentIds = Array.from({ length: EXPERIMENTS }, (_, i) => i + 1);

/** Imports IMPORT_ROWS new units into `experimentId`, in messages of 10,000 rows. */
async function importRows(t: Target, experimentId: number, prefix: string): Promise<number> {
  const unitIds = Array.from({ length: IMPORT_ROWS }, (_, i) => `${prefix}-${i}`);
  const staging = await t.transfers.beginImport();
  for (let i = 0; i < IMPORT_ROWS; i += 10_000) {
    const ids = unitIds.slice(i, i + 10_000);
    await staging.write(
      {
        experimentIds: new Int32Array(ids.length).fill(experimentId),
        unitIds: ids,
        variantIds: Int32Array.from(ids, (_, k) => k % 2),
      },
      false,
    );
  }
  const result = await staging.commit(false);
  if (result.imported !== IMPORT_ROWS) throw new Error(`${t.name}: imported ${result.imported}`);
  return IMPORT_ROWS;
}

/** Operations, each answering how many of its unit (page loads, rows) it did. */
const OPERATIONS: Record<string, { unit: string; run: (t: Target, round: number) => Promise<number> }> = {
  "page-load read (1 unit x 20 experiments, stored)": {
    unit: "page loads/s",
    async run(t, round) {
      await concurrently(READS, async (k) => {
        const u = (k * 7919 + round * 104_729) % UNITS;
        const found = await t.store.read(experimentIds.map((experimentId) => ({ experimentId, unitId: `unit-${u}` })));
        if (found.some((f) => f === undefined)) throw new Error(`unit-${u}: not found in ${t.name}`);
      });
      return READS;
    },
  },
  "page-load read through the partitioned table itself (no partition named: before this change)": {
    unit: "page loads/s",
    async run(t, round) {
      await concurrently(READS, async (k) => {
        const u = (k * 7919 + round * 104_729 + 5_003) % UNITS;
        const found = await t.tableStore.read(experimentIds.map((experimentId) => ({ experimentId, unitId: `unit-${u}` })));
        if (found.some((f) => f === undefined)) throw new Error(`unit-${u}: not found in ${t.name}`);
      });
      return READS;
    },
  },
  // New unit ids in order (new-0-1, new-0-2…, as a sequence of user ids makes them): the
  // unpartitioned table's inserts land in a few leaf pages of its one index, the partitioned table's
  // in as many of each partition's index (the partition is a hash of the unit id).
  "page-load insert (1 new unit x 20 experiments)": {
    unit: "rows/s",
    run: (t, round) => insertUnits(t, (k) => `new-${round}-${k}`),
  },
  // New unit ids at random (UUIDs, device ids): both tables' inserts land anywhere in their indexes.
  "page-load insert, unit ids at random (1 new unit x 20 experiments)": {
    unit: "rows/s",
    run: (t, round) => insertUnits(t, (k) => createHash("sha1").update(`${round}-${k}`).digest("hex")),
  },
  // One experiment for every round: from the second round on it holds rows, so the import takes
  // the staged merge (COPY into a temporary table, then INSERT … ON CONFLICT DO NOTHING), not the
  // COPY straight into assignments that the first round's takes (src/store/copy-import.ts).
  "import (COPY, one transaction)": {
    unit: "rows/s",
    run: (t, round) => importRows(t, IMPORT_EXPERIMENT, `imp-${round}`),
  },
  // A new experiment in every round: the import COPYs straight into assignments (into its
  // partitions where it is partitioned).
  "import into a new experiment (COPY straight in, one transaction)": {
    unit: "rows/s",
    run: (t, round) => importRows(t, NEW_IMPORT_EXPERIMENT + round, `new-imp-${round}`),
  },
  [`export of an experiment (COPY, ordered by unit id; ${EXPORTS} one after the other)`]: {
    unit: "rows/s",
    async run(t, round) {
      // Several experiments, one after the other: enough rows that the CPU, counted in clock ticks,
      // is measured to a few percent.
      let rows = 0;
      for (let k = 0; k < EXPORTS; k++) {
        let exported = 0;
        for await (const batch of t.transfers.exportBatches(((round * EXPORTS + k) % EXPERIMENTS) + 1, 10_000)) exported += batch.length;
        if (exported < UNITS) throw new Error(`${t.name}: exported ${exported}`);
        rows += exported;
      }
      return rows;
    },
  },
  "export, the database merging the partitions (one statement, Merge Append: before migration 15)": {
    unit: "rows/s",
    async run(t, round) {
      const bulk = t.db.bulkCopy;
      let rows = 0;
      for (let k = 0; k < EXPORTS; k++) {
        for await (const batch of exportByCopy(bulk, ((round * EXPORTS + k + 7) % EXPERIMENTS) + 1, 10_000)) rows += batch.length;
      }
      return rows;
    },
  },
};

for (const op of Object.keys(OPERATIONS)) if (ONLY && !ONLY.test(op)) delete OPERATIONS[op];

const STATEMENT_SAMPLES = Number(env.BENCH_PART_STATEMENTS ?? 2_000);

/**
 * The page-load statement's own time in the database, planning and execution apart (EXPLAIN
 * ANALYZE's summary, TIMING OFF), one statement at a time on one connection, the three ways in
 * turn (through the partitioned table, naming the unit's partition, the unpartitioned table), in
 * alternating order: medians of many short samples, which a busy machine disturbs far less than
 * rates (a sample it preempts is an outlier, not a shift of the median).
 */
async function statementTimes(partitioned: Target, plain: Target): Promise<string[]> {
  const layout = (await readPartitionLayout(partitioned.db))!;
  const ways = [
    { name: "partitioned table, through the table itself", t: partitioned, layout: undefined },
    { name: "partitioned table, naming the unit's partition", t: partitioned, layout },
    { name: "unpartitioned table", t: plain, layout: undefined },
  ];
  const times = ways.map(() => ({ planning: [] as number[], execution: [] as number[] }));
  // 50 units in turn, read once before the samples: their rows are in shared buffers for all
  // three (the rounds before, exports included, leave each table's pages cached or not by chance).
  for (let k = -50; k < STATEMENT_SAMPLES; k++) {
    const unitId = `unit-${(((k + 50) % 50) * 997) % UNITS}`;
    const order = k % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
    for (const w of order) {
      const q = readCells(
        experimentIds.map((experimentId) => ({ experimentId, unitId })),
        ways[w]!.layout,
      );
      const { rows } = await ways[w]!.t.client.query<{ "QUERY PLAN": Array<{ "Planning Time": number; "Execution Time": number }> }>(
        `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY, FORMAT JSON) ${q.text}`,
        q.values,
      );
      const plan = rows[0]!["QUERY PLAN"][0]!;
      if (k < 0) continue;
      times[w]!.planning.push(plan["Planning Time"] * 1000);
      times[w]!.execution.push(plan["Execution Time"] * 1000);
    }
  }
  const base = times[2]!;
  const total = (x: { planning: number[]; execution: number[] }) => x.planning.map((p, i) => p + x.execution[i]!);
  const out = [
    `The page-load statement alone (${fmt(STATEMENT_SAMPLES)} samples each over 50 units whose rows are cached, one at a time, the three in alternating order; medians, µs; ratio: the unpartitioned table's time / this one's):`,
    "",
    "| statement | planning | execution | both | ratio (both) |",
    "|---|---:|---:|---:|---:|",
  ];
  ways.forEach((w, i) => {
    const x = times[i]!;
    out.push(
      `| ${w.name} | ${median(x.planning).toFixed(0)} | ${median(x.execution).toFixed(0)} | ${median(total(x)).toFixed(0)} | ${(median(total(base)) / median(total(x))).toFixed(2)}× |`,
    );
  });
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

interface Sample {
  rate: number;
  /** CPU per 1,000 units (ms): the database backends', this process's. */
  dbCpu: number | undefined;
  nodeCpu: number;
  /** Time this process spent collecting garbage, per 1,000 units (ms). */
  gc: number;
}

/** Milliseconds of garbage collection so far (the collector's pauses, as V8 reports them). */
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ["gc"] });

/** One run of an operation on one target (in its worker), timed, with the CPU it cost: this
 * process's is every thread's, the main one waiting meanwhile. */
async function sample(admin: pg.Client, t: Target, op: string, round: number): Promise<Sample> {
  const before = await backendCpu(admin, t);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { units, gcMs: gc } = await t.worker.run(op, round);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const after = await backendCpu(admin, t);
  let db = 0;
  // A backend that appeared during the run counts from its start (its connection's setup included).
  for (const [pid, ms] of after) db += ms - (before.get(pid) ?? 0);
  return {
    rate: units / seconds,
    dbCpu: after.size > 0 ? (db / units) * 1000 : undefined,
    nodeCpu: ((cpu.user + cpu.system) / 1000 / units) * 1000,
    gc: (gc / units) * 1000,
  };
}

const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");

function commitOf(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    return dirty.trim() === "" ? head : `${head} (with uncommitted changes)`;
  } catch {
    return "unknown";
  }
}

async function main() {
  const cleanup = new Cleanup({ name: "bench:partitions" });
  try {
    log(await probePostgres(ADMIN_DATABASE_URL));
    const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
    await admin.connect();
    cleanup.add("disconnect", () => admin.end());
    const startedAt = new Date();
    const loadBefore = loadAverage();
    log(`filling two databases with ${fmt(UNITS * EXPERIMENTS)} rows each…`);
    const partitioned = await setUp(cleanup, `partitioned (${PARTITIONS} hash partitions by unit id)`, "partitioned");
    const plain = await setUp(cleanup, "unpartitioned", "unpartitioned");
    const samples = new Map<string, { p: Sample[]; u: Sample[] }>();
    const loads: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      loads.push(loadAverage());
      for (const [op, o] of Object.entries(OPERATIONS)) {
        const r = samples.get(op) ?? { p: [], u: [] };
        samples.set(op, r);
        // Alternate which goes first, so that neither always meets a warmer cache or a busier disk.
        const order = round % 2 === 0 ? [partitioned, plain] : [plain, partitioned];
        for (const t of order) {
          const s = await sample(admin, t, op, round);
          (t === partitioned ? r.p : r.u).push(s);
          log(
            `round ${round + 1} ${op} ${t === partitioned ? "partitioned" : "unpartitioned"}: ${fmt(s.rate)} ${o.unit}` +
              `, CPU per 1,000: database ${s.dbCpu?.toFixed(1) ?? "?"} ms, bench ${s.nodeCpu.toFixed(1)} ms (GC ${s.gc.toFixed(2)} ms) (load ${loadAverage()})`,
          );
        }
      }
    }
    const loadAfter = loadAverage();
    log("the page-load statement alone, timed by the database…");
    const statements = STATEMENT_SAMPLES > 0 ? await statementTimes(partitioned, plain) : [];

    // The in-place upgrade of a database at the schema before partitioning (migrations 1 to 6).
    let upgrade: string | undefined;
    if (UPGRADE) {
      log("the in-place upgrade: filling a database at the schema of migrations 1 to 6…");
      const before = await setUp(cleanup, "before partitioning", "before-partitioning");
      const { rows: count } = await before.client.query<{ n: number }>(`SELECT count(*)::int AS n FROM assignments`);
      await runMigrations(before.client, { assignmentPartitions: PARTITIONS });
      const t0 = performance.now();
      await runPartitionMove(before.db);
      const moveSeconds = (performance.now() - t0) / 1000;
      upgrade =
        `In-place upgrade of a database at the schema of migrations 1 to 6 (${fmt(count[0]!.n)} rows, no other load, load average ${loadAverage()}): ` +
        `${moveSeconds.toFixed(1)} s, ${(moveSeconds / (count[0]!.n / 1e6)).toFixed(1)} s per million rows.`;
    }

    const out: string[] = [];
    out.push(
      `Partitioned vs unpartitioned assignments, one run (\`npm run bench:partitions\`), ${startedAt.toISOString().slice(0, 16).replace("T", " ")}–${new Date().toISOString().slice(11, 16)} UTC, commit ${commitOf()}`,
    );
    out.push("");
    out.push(
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${await probePostgres(ADMIN_DATABASE_URL)}; ` +
        `${fmt(UNITS * EXPERIMENTS)} rows before the first round (${EXPERIMENTS} experiments x ${fmt(UNITS)} units); ` +
        `${IN_FLIGHT} calls in flight; median of ${ROUNDS} rounds, the two tables alternating. ` +
        `Load average (1, 5, 15 min) ${loadBefore} at the start, ${loads.join(" / ")} at each round, ${loadAfter} at the end.`,
    );
    out.push("");
    out.push(
      "| operation | partitioned | unpartitioned | ratio | database CPU per 1,000 (partitioned / unpartitioned) | bench process CPU per 1,000 (of which garbage collection) | rates of each round (partitioned / unpartitioned) |",
    );
    out.push("|---|---:|---:|---:|---:|---:|---|");
    for (const [op, o] of Object.entries(OPERATIONS)) {
      const r = samples.get(op)!;
      const p = median(r.p.map((s) => s.rate));
      const u = median(r.u.map((s) => s.rate));
      const dbP = r.p.every((s) => s.dbCpu !== undefined) ? median(r.p.map((s) => s.dbCpu!)) : undefined;
      const dbU = r.u.every((s) => s.dbCpu !== undefined) ? median(r.u.map((s) => s.dbCpu!)) : undefined;
      const cpu =
        dbP !== undefined && dbU !== undefined ? `${dbP.toFixed(1)} / ${dbU.toFixed(1)} ms (${(dbU / dbP).toFixed(2)}×)` : "(not local)";
      const node =
        `${median(r.p.map((s) => s.nodeCpu)).toFixed(1)} / ${median(r.u.map((s) => s.nodeCpu)).toFixed(1)} ms ` +
        `(${median(r.p.map((s) => s.gc)).toFixed(2)} / ${median(r.u.map((s) => s.gc)).toFixed(2)})`;
      const rounds = r.p.map((s, i) => `${fmt(s.rate)}/${fmt(r.u[i]!.rate)}`).join(" · ");
      out.push(
        `| ${op} | ${fmt(p)} ${o.unit} | ${fmt(u)} ${o.unit} | ${(p / u).toFixed(2)}× ${p / u >= 0.9 ? "✅" : "❌"} | ${cpu} | ${node} | ${rounds} |`,
      );
    }
    out.push("", ...statements);
    if (upgrade) out.push("", upgrade);
    process.stdout.write(out.join("\n") + "\n");
  } finally {
    await cleanup.run();
  }
}

if (isMainThread) await main();
else await serveWorker(workerData as WorkerTarget);
