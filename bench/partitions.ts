/**
 * `npm run bench:partitions`: the stores' own statements (src/store) on the partitioned assignments
 * table (migration 7: hash by unit id, ASSIGNMENT_PARTITIONS) against the unpartitioned one (the
 * schema of migrations 1 to 6), in the same run, on the same PostgreSQL: two fresh databases filled
 * alike, each operation run on both in alternating order, ROUNDS times; the median rate of each is
 * reported, with the ratio partitioned / unpartitioned (target ≥ 0.9). The store level is measured,
 * not gRPC: what differs between the two is the database's work, which the transport would dilute.
 * Then the in-place upgrade (src/store/partition-move.ts) of the unpartitioned database: seconds
 * per million rows. Results go to stdout as Markdown; progress to stderr.
 *
 * Environment:
 *   DATABASE_URL                 PostgreSQL (default local); needs CREATE DATABASE
 *   BENCH_PART_UNITS             units per experiment in the initial fill (50000; x20 experiments)
 *   BENCH_PART_ROUNDS            rounds (3)
 *   ASSIGNMENT_PARTITIONS        partitions of the partitioned database (16)
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { Source } from "../gen/ts/assignment/v1/types_pb.js";
import { Cleanup } from "../harness/cleanup.js";
import { createDatabase } from "../harness/databases.js";
import { AssignmentStore } from "../src/store/assignment-store.js";
import { MIGRATIONS_DIR, runMigrations } from "../src/store/migrations.js";
import { runPartitionMove } from "../src/store/partition-move.js";
import { PgDatabase } from "../src/store/pg-database.js";
import { TransferStore } from "../src/store/transfer-store.js";
import { log, probePostgres } from "./infra.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const UNITS = Number(env.BENCH_PART_UNITS ?? 50_000);
const ROUNDS = Number(env.BENCH_PART_ROUNDS ?? 3);
const PARTITIONS = Number(env.ASSIGNMENT_PARTITIONS ?? 16);
const EXPERIMENTS = 20;
const IMPORT_EXPERIMENT = EXPERIMENTS + 1;
const IN_FLIGHT = 8;
const READS = 3_000;
const INSERT_UNITS = 1_500;
const IMPORT_ROWS = 100_000;

interface Target {
  name: string;
  url: string;
  client: pg.Client;
  db: PgDatabase;
  store: AssignmentStore;
  transfers: TransferStore;
}

async function setUp(cleanup: Cleanup, name: string, partitioned: boolean): Promise<Target> {
  const fresh = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${fresh.name}`, fresh.drop);
  const client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
  cleanup.add("disconnect", () => client.end());
  if (partitioned) await runMigrations(client, { assignmentPartitions: PARTITIONS });
  else
    await runner({
      dbClient: client as never,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "schema_migrations",
      count: 6,
      log: () => {},
    });
  const variants = JSON.stringify([
    { id: 0, key: "a", weight: 5000 },
    { id: 1, key: "b", weight: 5000 },
  ]);
  for (let e = 1; e <= IMPORT_EXPERIMENT; e++) {
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
  await client.query(`VACUUM ANALYZE assignments`);
  const db = new PgDatabase({ url: fresh.url, max: IN_FLIGHT + 2 });
  cleanup.add("close pool", () => db.close());
  return { name, url: fresh.url, client, db, store: new AssignmentStore(db), transfers: new TransferStore(db) };
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

/** Operations, each answering rows per second. */
const OPERATIONS: Record<string, { unit: string; run: (t: Target, round: number) => Promise<number> }> = {
  "page-load read (1 unit x 20 experiments, stored)": {
    unit: "page loads/s",
    async run(t, round) {
      const t0 = performance.now();
      await concurrently(READS, async (k) => {
        const u = (k * 7919 + round * 104_729) % UNITS;
        const found = await t.store.read(experimentIds.map((experimentId) => ({ experimentId, unitId: `unit-${u}` })));
        if (found.some((f) => f === undefined)) throw new Error(`unit-${u}: not found in ${t.name}`);
      });
      return READS / ((performance.now() - t0) / 1000);
    },
  },
  "page-load insert (1 new unit x 20 experiments)": {
    unit: "rows/s",
    async run(t, round) {
      const t0 = performance.now();
      await concurrently(INSERT_UNITS, async (k) => {
        const unitId = `new-${round}-${k}`;
        const out = await t.store.insert(
          experimentIds.map((experimentId) => ({ experimentId, unitId, variantId: 1, version: 1n, source: Source.HASH })),
        );
        if (!out.every((o) => o.won)) throw new Error(`${unitId}: not new in ${t.name}`);
      });
      return (INSERT_UNITS * EXPERIMENTS) / ((performance.now() - t0) / 1000);
    },
  },
  "import (COPY, one transaction)": {
    unit: "rows/s",
    async run(t, round) {
      const unitIds = Array.from({ length: IMPORT_ROWS }, (_, i) => `imp-${round}-${i}`);
      const t0 = performance.now();
      const staging = await t.transfers.beginImport();
      for (let i = 0; i < IMPORT_ROWS; i += 10_000) {
        const ids = unitIds.slice(i, i + 10_000);
        await staging.write(
          {
            experimentIds: new Int32Array(ids.length).fill(IMPORT_EXPERIMENT),
            unitIds: ids,
            variantIds: Int32Array.from(ids, (_, k) => k % 2),
          },
          false,
        );
      }
      const result = await staging.commit(false);
      if (result.imported !== IMPORT_ROWS) throw new Error(`${t.name}: imported ${result.imported}`);
      return IMPORT_ROWS / ((performance.now() - t0) / 1000);
    },
  },
  "export of one experiment (COPY, ordered by unit id)": {
    unit: "rows/s",
    async run(t, round) {
      const t0 = performance.now();
      let rows = 0;
      for await (const batch of t.transfers.exportBatches((round % EXPERIMENTS) + 1, 10_000)) rows += batch.length;
      if (rows < UNITS) throw new Error(`${t.name}: exported ${rows}`);
      return rows / ((performance.now() - t0) / 1000);
    },
  },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function main() {
  const cleanup = new Cleanup({ name: "bench:partitions" });
  try {
    log(await probePostgres(ADMIN_DATABASE_URL));
    log(`filling two databases with ${fmt(UNITS * EXPERIMENTS)} rows each…`);
    const partitioned = await setUp(cleanup, `partitioned (${PARTITIONS} hash partitions by unit id)`, true);
    const plain = await setUp(cleanup, "unpartitioned", false);
    const rates = new Map<string, { p: number[]; u: number[] }>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [op, o] of Object.entries(OPERATIONS)) {
        const r = rates.get(op) ?? { p: [], u: [] };
        rates.set(op, r);
        // Alternate which goes first, so that neither always meets a warmer cache or a busier disk.
        const order = round % 2 === 0 ? [partitioned, plain] : [plain, partitioned];
        for (const t of order) {
          const rate = await o.run(t, round);
          (t === partitioned ? r.p : r.u).push(rate);
          log(`round ${round + 1} ${op} ${t === partitioned ? "partitioned" : "unpartitioned"}: ${fmt(rate)} ${o.unit}`);
        }
      }
    }

    // The in-place upgrade of the unpartitioned database (now holding the rows of every round).
    const { rows: count } = await plain.client.query<{ n: number }>(`SELECT count(*)::int AS n FROM assignments`);
    await runMigrations(plain.client, { assignmentPartitions: PARTITIONS });
    const t0 = performance.now();
    await runPartitionMove(plain.db);
    const moveSeconds = (performance.now() - t0) / 1000;

    const out: string[] = [];
    out.push(`Partitioned vs unpartitioned assignments, one run (\`npm run bench:partitions\`), ${new Date().toISOString().slice(0, 10)}`);
    out.push("");
    out.push(
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${await probePostgres(ADMIN_DATABASE_URL)}; ` +
        `${fmt(UNITS * EXPERIMENTS)} rows before the first round (${EXPERIMENTS} experiments x ${fmt(UNITS)} units); ` +
        `${IN_FLIGHT} calls in flight; median of ${ROUNDS} rounds, the two tables alternating.`,
    );
    out.push("");
    out.push("| operation | partitioned | unpartitioned | ratio |");
    out.push("|---|---:|---:|---:|");
    for (const [op, o] of Object.entries(OPERATIONS)) {
      const r = rates.get(op)!;
      const p = median(r.p);
      const u = median(r.u);
      out.push(`| ${op} | ${fmt(p)} ${o.unit} | ${fmt(u)} ${o.unit} | ${(p / u).toFixed(2)}× ${p / u >= 0.9 ? "✅" : "❌"} |`);
    }
    out.push("");
    out.push(
      `In-place upgrade of the unpartitioned database (${fmt(count[0]!.n)} rows, no other load): ${moveSeconds.toFixed(1)} s, ` +
        `${(moveSeconds / (count[0]!.n / 1e6)).toFixed(1)} s per million rows.`,
    );
    process.stdout.write(out.join("\n") + "\n");
  } finally {
    await cleanup.run();
  }
}

await main();
