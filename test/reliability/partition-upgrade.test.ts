/**
 * The upgrade of a populated installation to the partitioned assignments table, in place, under
 * load (README "Partitioned assignments"; migration 7_partitioned-assignments; src/store/partition-move.ts).
 *
 * A database made by the old schema (migrations 1 to 6) holds 2,000,000 stored assignments:
 * 20 experiments x 100,000 units, each stored variant chosen by the unit's number, not by the hash,
 * so that only a read of the stored row can answer it. A real server starts on it (running
 * migration 7, then copying rows over in batches while it serves). Meanwhile page loads run through
 * a real gRPC client (AssignUnit, one unit x 20 experiments, 6 in flight, each for another unit, so
 * that the caches do not answer for the database): every answer is STICKY with the stored variant,
 * before, during and after the swap. New units assigned meanwhile (another experiment) are stored
 * and answered STICKY afterwards. At the end the table is partitioned, and an md5 over all
 * 2,000,000 rows of the 20 experiments, in key order, equals the one taken before.
 */
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, createClient, type Client, Reason } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { MIGRATIONS_DIR } from "../../src/store/migrations.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";

const EXPERIMENTS = 20;
const UNITS = 100_000;
const KEYS = Array.from({ length: EXPERIMENTS }, (_, i) => `old-${i}`);
/** The variant the old table stores for unit u of experiment e (ids 0..2; keys a, b, c). */
const storedVariant = (e: number, u: number) => "abc"[(u * 7 + e) % 3];
const CHECKSUM = `SELECT md5(string_agg(experiment_id || ',' || unit_id || ',' || variant || ',' || version || ',' || source || ',' || assigned_at::text, ';' ORDER BY experiment_id, unit_id)) AS sum, count(*)::int AS n
  FROM assignments WHERE experiment_id <= ${EXPERIMENTS}`;

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let client: pg.Client;
let server: RunningServer | undefined;
let assign: Client<typeof AssignmentService> | undefined;
const prefix = freshRedisPrefix();

beforeAll(async () => {
  fresh = await freshDatabase();
  client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
});
// Dropping a database that just took millions of writes waits for the checkpoint it forces: on a
// busy machine that took more than the hooks' usual 2 minutes.
afterAll(async () => {
  assign?.close();
  await server?.close();
  await client?.end();
  await flushPrefix(redisUrl(), prefix);
  await fresh?.drop();
}, 600_000);

const pending = async () =>
  (await client.query<{ p: boolean }>(`SELECT to_regclass('assignments_partitioning') IS NOT NULL AS p`)).rows[0]!.p;

describe("upgrading 2,000,000 stored assignments to the partitioned table while page loads run", () => {
  it("keeps every row, and answers every page load STICKY with the stored variant throughout", { timeout: 600_000 }, async () => {
    await runner({
      dbClient: client as never,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "schema_migrations",
      count: 6,
      log: () => {},
    });
    const variants = JSON.stringify([
      { id: 0, key: "a", weight: 3334 },
      { id: 1, key: "b", weight: 3333 },
      { id: 2, key: "c", weight: 3333 },
    ]);
    for (const key of [...KEYS, "new-units"]) {
      await client.query(`INSERT INTO salts VALUES ($1, $2)`, [key, `experiment:${key}`]);
      await client.query(
        `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status) VALUES ($1, $1, 'user_id', 1, $2, 10000, 2)`,
        [key, variants],
      );
    }
    // Experiment ids are 1..20 in KEYS order (a fresh serial); the new-units experiment is 21.
    await client.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source, assigned_at)
       SELECT e, 'unit-' || u, (u * 7 + e - 1) % 3, 1, 1 + (u % 2), '2026-01-01'::timestamptz + (u % 86400) * interval '1 s'
         FROM generate_series(1, ${EXPERIMENTS}) e, generate_series(0, ${UNITS - 1}) u`,
    );
    const before = (await client.query(CHECKSUM)).rows[0];
    expect(before.n).toBe(EXPERIMENTS * UNITS);

    server = await startServer({
      databaseUrl: fresh.url,
      redisUrl: redisUrl(),
      redisPrefix: prefix,
      port: 0,
      assignmentPartitions: 8,
      logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    });
    assign = createClient(AssignmentService, server.address, { timeoutMs: 30_000 });
    const movingAtStart = await pending();
    expect(movingAtStart).toBe(true);

    let next = 0;
    let loads = 0;
    let loadsWhileMoving = 0;
    const wrong: string[] = [];
    const newUnits: string[] = [];
    let moving = true;
    const pageLoads = async () => {
      while (moving) {
        const n = next++;
        const u = (n * 7919) % UNITS; // every load another unit
        const { assignments } = await assign!.assignUnit({ units: { user_id: `unit-${u}` }, experimentKeys: KEYS });
        KEYS.forEach((key, e) => {
          const a = assignments[e];
          if (a?.experimentKey !== key || a.reason !== Reason.STICKY || a.variantKey !== storedVariant(e, u)) {
            wrong.push(`${key}/unit-${u}: ${a?.experimentKey} ${a ? Reason[a.reason] : "missing"} ${a?.variantKey}`);
          }
        });
        const fresh = `new-${n}`;
        const [answer] = (await assign!.assignUnit({ units: { user_id: fresh }, experimentKeys: ["new-units"] })).assignments;
        if (answer?.reason !== Reason.NEW) wrong.push(`new-units/${fresh}: ${answer ? Reason[answer.reason] : "missing"}`);
        else newUnits.push(fresh);
        loads++;
        if (await pending()) loadsWhileMoving++;
      }
    };
    const started = performance.now();
    const loaders = Array.from({ length: 6 }, pageLoads);
    while (await pending()) await new Promise((r) => setTimeout(r, 100));
    const seconds = (performance.now() - started) / 1000;
    // A few more page loads on the partitioned table.
    const after = loads;
    while (loads < after + 30) await new Promise((r) => setTimeout(r, 20));
    moving = false;
    await Promise.all(loaders);

    console.log(
      `partition upgrade: ${EXPERIMENTS * UNITS} rows in ${seconds.toFixed(1)} s under load (${(seconds / ((EXPERIMENTS * UNITS) / 1e6)).toFixed(1)} s per million rows); ${loads} page loads, ${loadsWhileMoving} while copying`,
    );
    expect(wrong).toEqual([]);
    expect(loadsWhileMoving).toBeGreaterThan(20);

    const { rows: kind } = await client.query(
      `SELECT relkind::text AS kind, (SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'assignments'::regclass) AS partitions
         FROM pg_class WHERE oid = 'assignments'::regclass`,
    );
    expect(kind).toEqual([{ kind: "p", partitions: 8 }]);
    expect((await client.query(CHECKSUM)).rows[0]).toEqual(before);
    // Every new unit answered NEW meanwhile is stored once, and answered STICKY now.
    const { rows: stored } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM assignments WHERE experiment_id = ${EXPERIMENTS + 1} AND unit_id = ANY($1::text[])`,
      [newUnits],
    );
    expect(stored[0]!.n).toBe(newUnits.length);
    for (const u of newUnits.slice(0, 50)) {
      const [a] = (await assign.assignUnit({ units: { user_id: u }, experimentKeys: ["new-units"] })).assignments;
      expect(a?.reason).toBe(Reason.STICKY);
    }
  });
});
