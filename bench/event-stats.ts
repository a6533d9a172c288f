/**
 * `npm run bench:event-stats`: GetExperimentStats on 10,000,000 stored rows (issue 13 acceptance:
 * ≤ 20 ms p50, equal to COUNT(*)).
 *
 * One server process on a fresh database. The rows are written the way writes reach the table,
 * through its triggers: INSERT … SELECT FROM generate_series in statements of 1,000,000 rows (a
 * tenth with source IMPORT), then an UPDATE of 100,000 of them (an overwrite: variant and source
 * change) and a DELETE of 50,000 (an erasure's delete). The outbox triggers record every change and
 * the server's sequencer folds them into the live counts (assignment_counts), as it does for real
 * writes; nothing writes the counts by hand. Once the outbox is empty: the same counts by
 * COUNT(*) … GROUP BY (timed), then GetExperimentStats through the gRPC client (warm-up, then
 * measured calls, one at a time), whose per-variant units and imported counts must equal COUNT(*).
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local servers); BENCH_STATS_ROWS (10,000,000);
 * BENCH_STATS_CALLS (200).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { createClient, ExperimentService, ExperimentStatus } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { benchServer, log, runBench } from "./infra.js";
import { percentile } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const ROWS = Number(env.BENCH_STATS_ROWS ?? 10_000_000);
const CALLS = Number(env.BENCH_STATS_CALLS ?? 200);
const CHUNK = 1_000_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(" / ");
const f = (x: number) => Math.round(x).toLocaleString("en-US");

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main(cleanup: Cleanup): Promise<void> {
  const { db, server } = await benchServer(cleanup, { adminDatabaseUrl: ADMIN_DATABASE_URL, redisUrl: REDIS_URL, nodeArgs: [] });
  const admin = createClient(ExperimentService, server.address, { timeoutMs: 60_000 });
  cleanup.add("close client", async () => admin.close());
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());
  const variants = [
    { key: "control", weight: 3400 },
    { key: "treatment", weight: 3300 },
    { key: "other", weight: 3300 },
  ];
  await admin.createExperiment({ key: "big", variants, status: ExperimentStatus.RUNNING });
  await admin.createExperiment({ key: "small", variants, status: ExperimentStatus.RUNNING });
  const id = async (key: string) => (await sql.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1`, [key])).rows[0]!.id;
  const big = await id("big");
  const small = await id("small");

  const fillStarted = performance.now();
  for (let from = 0; from < ROWS; from += CHUNK) {
    const to = Math.min(ROWS, from + CHUNK) - 1;
    const t = performance.now();
    await sql.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT $1, 'u' || g, (g % 3)::smallint, 1, CASE WHEN g % 10 = 0 THEN 2 ELSE 1 END FROM generate_series($2::int, $3::int) g`,
      [big, from, to],
    );
    log(`inserted rows ${f(from)}..${f(to)} in ${((performance.now() - t) / 1000).toFixed(1)} s (load ${load()})`);
  }
  // Another experiment's rows, so that the counts of one are seen apart from another's.
  await sql.query(
    `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) SELECT $1, 'u' || g, 0, 1, 1 FROM generate_series(1, 10000) g`,
    [small],
  );
  // An overwrite (variant and source change) and an erasure's delete, through the same triggers.
  await sql.query(
    `UPDATE assignments SET variant = ((variant + 1) % 3)::smallint, source = 2, version = 2
      WHERE experiment_id = $1 AND unit_id IN (SELECT 'u' || g FROM generate_series(1, 100000) g)`,
    [big],
  );
  await sql.query(
    `DELETE FROM assignments WHERE experiment_id = $1 AND unit_id IN (SELECT 'u' || g FROM generate_series(200000, 249999) g)`,
    [big],
  );
  const outbox = async () => Number((await sql.query<{ n: string }>(`SELECT count(*) AS n FROM assignment_outbox`)).rows[0]!.n);
  for (let left = await outbox(); left > 0; left = await outbox()) {
    log(`waiting for the sequencer: ${f(left)} outbox rows left`);
    await sleep(2_000);
  }
  const fillSeconds = (performance.now() - fillStarted) / 1000;
  log(`filled and sequenced in ${fillSeconds.toFixed(0)} s`);
  await sql.query(`VACUUM ANALYZE assignments`);

  const t = performance.now();
  const { rows: counted } = await sql.query<{ variant: number; source: number; n: string }>(
    `SELECT variant, source, count(*)::text AS n FROM assignments WHERE experiment_id = $1 GROUP BY variant, source`,
    [big],
  );
  const countMs = performance.now() - t;
  const total = counted.reduce((n, r) => n + Number(r.n), 0);
  // GetExperimentStats: units (and total_units) are those stored by hashing (source 1), imported apart (source 2).
  const hashed = counted.filter((r) => r.source === 1).reduce((n, r) => n + Number(r.n), 0);
  const outboxSize = async () =>
    (await sql.query<{ s: string }>(`SELECT pg_size_pretty(pg_relation_size('assignment_outbox')) AS s`)).rows[0]!.s;
  const explain = async () => {
    // Where a call's time goes: the live-counts query of ExperimentStore.countAssignments (nothing waiting), explained.
    const { rows: plan } = await sql.query<{ "QUERY PLAN": string }>(
      `EXPLAIN (ANALYZE, BUFFERS) SELECT EXISTS (SELECT 1 FROM assignment_outbox_tx) AS waiting,
              array_agg(variant ORDER BY source, variant), array_agg(source ORDER BY source, variant), array_agg(n::text ORDER BY source, variant)
         FROM assignment_counts WHERE experiment_id = $1 AND n <> 0`,
      [big],
    );
    log(`the live-counts query (assignment_outbox ${await outboxSize()} on disk):\n${plan.map((r) => r["QUERY PLAN"]).join("\n")}`);
  };

  /** CALLS measured GetExperimentStats (after 20 unrecorded), each checked against COUNT(*). */
  const measure = async (label: string) => {
    await explain();
    const size = await outboxSize();
    const before = load();
    const latencies: number[] = [];
    let cpu0 = 0;
    let last: Awaited<ReturnType<typeof admin.getExperimentStats>> | undefined;
    for (let i = 0; i < 20 + CALLS; i++) {
      if (i === 20) cpu0 = cpuSecondsOf(server.pid);
      const s = performance.now();
      last = await admin.getExperimentStats({ key: "big" });
      if (i >= 20) latencies.push(performance.now() - s);
    }
    const cpuMs = ((cpuSecondsOf(server.pid) - cpu0) / CALLS) * 1000;
    const mismatches: string[] = [];
    if (Number(last!.totalUnits) !== hashed) mismatches.push(`total ${last!.totalUnits} vs COUNT(*) ${hashed}`);
    for (const [i, v] of variants.entries()) {
      const want = counted.filter((r) => r.variant === i && r.source === 1).reduce((n, r) => n + Number(r.n), 0);
      const wantImported = counted.filter((r) => r.variant === i && r.source === 2).reduce((n, r) => n + Number(r.n), 0);
      const got = last!.variants.find((x) => x.variantKey === v.key);
      if (Number(got?.units) !== want) mismatches.push(`${v.key}: units ${got?.units} vs COUNT(*) ${want}`);
      if (Number(got?.imported) !== wantImported) mismatches.push(`${v.key}: imported ${got?.imported} vs COUNT(*) ${wantImported}`);
    }
    if (mismatches.length > 0) throw new Error(`GetExperimentStats differs from COUNT(*): ${mismatches.join("; ")}`);
    const sorted = Float64Array.from(latencies).sort();
    const p50 = percentile(sorted, 50);
    return `| ${label} (outbox ${size}) | ${f(total)} | ${p50.toFixed(1)} ms ${p50 <= 20 ? "✅" : "❌"} / ${percentile(sorted, 99).toFixed(1)} ms / ${sorted[sorted.length - 1]!.toFixed(1)} ms | ${cpuMs.toFixed(2)} ms | yes (${variants.length} variants: hashed ${f(hashed)}, imported ${f(total - hashed)}) | ${f(countMs)} ms | ${before} |`;
  };
  const right = await measure("right after the sequencer caught up");
  // Autovacuum of the outbox (migration 15: at 10,000 dead rows) removes its dead pages.
  const vacuumed = async () =>
    (
      await sql.query<{ n: number }>(
        `SELECT (coalesce(last_autovacuum, 'epoch') > now() - make_interval(secs => $1))::int AS n FROM pg_stat_user_tables WHERE relname = 'assignment_outbox'`,
        [(performance.now() - fillStarted) / 1000],
      )
    ).rows[0]!.n === 1;
  const waited = performance.now();
  while (!(await vacuumed()) && performance.now() - waited < 120_000) await sleep(2_000);
  const after = await measure(
    `${(await vacuumed()) ? "after autovacuum of the outbox" : "autovacuum not yet run on the outbox"}, ${((performance.now() - waited) / 1000).toFixed(0)} s later`,
  );
  const lines = [
    `GetExperimentStats, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}; filled and sequenced in ${fillSeconds.toFixed(0)} s`,
    "",
    "| when | stored rows of the experiment | GetExperimentStats p50 / p99 / max | server CPU a call | equal to COUNT(*) | COUNT(*) … GROUP BY once | load at the calls (1/5/15 min) |",
    "|---|---|---|---|---|---|---|",
    right,
    after,
    "",
    `${CALLS} measured calls one at a time after 20 unrecorded; target p50 ≤ 20 ms. Load average at the end: ${load()}.`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await runBench(main);
