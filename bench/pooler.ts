/**
 * `npm run bench:pooler`: page loads per second through PgBouncer (transaction pooling) next to
 * the same server straight on PostgreSQL, in one run (README "Connection poolers").
 *
 * One fresh database, one PgBouncer (harness/pgbouncer.ts, pool_mode transaction, BENCH_POOL_SIZE
 * server connections) in front of the same PostgreSQL, and two server processes: "direct"
 * (DATABASE_URL on PostgreSQL) and "pooled" (DATABASE_URL on PgBouncer, DATABASE_DIRECT_URL on
 * PostgreSQL). A page load is AssignUnit of one new unit over the 10 bench experiments (every cell
 * NEW: an INSERT on PostgreSQL each call; the caches cannot answer a new unit), BENCH_CONCURRENCY
 * calls in flight, BENCH_SECONDS per phase; phases alternate direct, pooled, direct, pooled, so
 * that drift of the machine shows as a difference between rounds. Every answer is checked to be
 * NEW and stored.
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local), BENCH_SECONDS (8), BENCH_CONCURRENCY (32),
 * BENCH_POOL_SIZE (20).
 */
import { performance } from "node:perf_hooks";
import { AssignmentService, createClient, ExperimentService, Reason } from "assignment-client";
import { Cleanup } from "../harness/cleanup.js";
import { createDatabase, flushPrefix } from "../harness/databases.js";
import { startPgBouncer } from "../harness/pgbouncer.js";
import { log, probePostgres, probeRedis, startServerChild } from "./infra.js";
import { createBenchExperiments, EXPERIMENT_KEYS } from "./scenarios.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const SECONDS = Number(env.BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(env.BENCH_CONCURRENCY ?? 32);
const POOL_SIZE = Number(env.BENCH_POOL_SIZE ?? 20);

const cleanup = new Cleanup({ name: "bench", exitBackstop: true });

async function main(): Promise<void> {
  log(`${await probePostgres(ADMIN_DATABASE_URL)}; ${await probeRedis(REDIS_URL)}`);
  const db = await createDatabase(ADMIN_DATABASE_URL, "bench_pool_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const prefix = `bench:${db.name}:`;
  cleanup.add(`remove Redis keys ${prefix}*`, async () => void (await flushPrefix(REDIS_URL, prefix)));
  const pgUrl = new URL(ADMIN_DATABASE_URL);
  const bouncer = await startPgBouncer(cleanup, {
    name: "bench-pgbouncer",
    server: { host: pgUrl.hostname, port: Number(pgUrl.port || 5432) },
    poolSize: POOL_SIZE,
  });
  const common = { REDIS_URL, REDIS_PREFIX: prefix, LOG_LEVEL: "warn" };
  const direct = await startServerChild("direct", { ...common, DATABASE_URL: db.url });
  cleanup.add("stop direct", direct.stop);
  const pooled = await startServerChild("pooled", { ...common, DATABASE_URL: bouncer.url(db.name), DATABASE_DIRECT_URL: db.url });
  cleanup.add("stop pooled", pooled.stop);

  const admin = createClient(ExperimentService, direct.address, { timeoutMs: 30_000 });
  await createBenchExperiments(admin);
  admin.close();
  const clients = { direct: createClient(AssignmentService, direct.address, { timeoutMs: 30_000 }) };
  const pooledClient = createClient(AssignmentService, pooled.address, { timeoutMs: 30_000 });
  // The pooled server must serve the experiments (it hears of them by LISTEN).
  for (let k = 0; k < 200; k++) {
    const r = await pooledClient.assignUnit({ units: { user_id: "probe" }, experimentKeys: EXPERIMENT_KEYS });
    if (r.assignments.every((a) => a.reason !== Reason.UNKNOWN_EXPERIMENT)) break;
    await new Promise((r) => setTimeout(r, 50));
  }

  let next = 0;
  const phase = async (name: "direct" | "pooled"): Promise<number> => {
    const client = name === "direct" ? clients.direct : pooledClient;
    const end = performance.now() + SECONDS * 1000;
    let calls = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < end) {
          const unit = `pl-${next++}`;
          const r = await client.assignUnit({ units: { user_id: unit }, experimentKeys: EXPERIMENT_KEYS });
          if (r.assignments.length !== EXPERIMENT_KEYS.length || r.assignments.some((a) => a.reason !== Reason.NEW || !a.stored)) {
            throw new Error(`${name}: unit ${unit} was not answered NEW and stored in every experiment`);
          }
          calls++;
        }
      }),
    );
    const rate = calls / ((performance.now() - started) / 1000);
    log(`${name}: ${calls} page loads, ${rate.toFixed(0)}/s`);
    return rate;
  };
  await phase("direct"); // warm-up of both (JIT, pools)
  await phase("pooled");
  const rates: Record<string, number[]> = { direct: [], pooled: [] };
  for (let round = 0; round < 2; round++) {
    rates.direct!.push(await phase("direct"));
    rates.pooled!.push(await phase("pooled"));
  }
  clients.direct.close();
  pooledClient.close();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const d = mean(rates.direct!);
  const p = mean(rates.pooled!);
  process.stdout.write(
    [
      `## Page loads through PgBouncer (transaction pooling) vs direct`,
      "",
      `AssignUnit, 1 new unit × ${EXPERIMENT_KEYS.length} experiments (every cell NEW: an INSERT), ${CONCURRENCY} in flight, ${SECONDS} s per phase, PgBouncer pool ${POOL_SIZE}.`,
      "",
      "| server | round 1 (/s) | round 2 (/s) | mean (/s) |",
      "|---|---|---|---|",
      `| direct | ${rates.direct!.map((x) => x.toFixed(0)).join(" | ")} | ${d.toFixed(0)} |`,
      `| through PgBouncer | ${rates.pooled!.map((x) => x.toFixed(0)).join(" | ")} | ${p.toFixed(0)} |`,
      "",
      `Pooled / direct: ${(p / d).toFixed(2)}`,
      "",
    ].join("\n"),
  );
}

main()
  .then(
    () => cleanup.run(),
    async (err) => {
      process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
      await cleanup.run();
      process.exitCode = 1;
    },
  )
  .then(() => process.exit());
