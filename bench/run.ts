/**
 * `npm run bench`: latency of the assignment calls through the real gRPC client against a real
 * server in a separate process, on a fresh database and Redis key prefix (both removed at the end).
 * See BENCHMARKS.md for what each scenario does. Results go to stdout as Markdown; progress to stderr.
 *
 * Environment:
 *   DATABASE_URL, REDIS_URL     servers to use (default: local PostgreSQL and Redis)
 *   BENCH_WARM_ITERATIONS       measured warm calls per phase (2000), after BENCH_WARM_WARMUP (200)
 *   BENCH_COLD_ITERATIONS       measured cold calls per phase (500), after BENCH_COLD_WARMUP (50)
 *   BENCH_ONLY                  comma-separated scenario ids to run (1x10,1000x1,100x10,trivial,transport)
 *   BENCH_MAX_SECONDS           soft limit of the whole run (150; hard stop 20 s later); phases stop early to keep it
 *   BENCH_CPU_PROF_DIR          write V8 CPU profiles of the server processes there
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { AssignmentService, createClient, ExperimentService, Layer, Reason } from "assignment-client";
import { Cleanup } from "../harness/cleanup.js";
import { createDatabase, flushPrefix } from "../harness/databases.js";
import type { ServerProcess } from "../harness/spawn-server.js";
import { log, probePostgres, probeRedis, redactUrl, startServerChild, Unreachable } from "./infra.js";
import {
  connectAssignClient,
  createBenchExperiments,
  EXPERIMENT_KEYS,
  SCENARIOS,
  trivialCaller,
  type AssignmentClient,
  type Outcome,
  type Scenario,
} from "./scenarios.js";
import { ms, summarize, type Summary } from "./stats.js";

const env = process.env;

function intEnv(name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer (got ${JSON.stringify(v)})`);
  return n;
}

const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const WARM = { warmup: intEnv("BENCH_WARM_WARMUP", 200), iterations: intEnv("BENCH_WARM_ITERATIONS", 2_000), budgetMs: 10_000 };
const COLD = { warmup: intEnv("BENCH_COLD_WARMUP", 50), iterations: intEnv("BENCH_COLD_ITERATIONS", 500), budgetMs: 15_000 };
const MAX_MS = intEnv("BENCH_MAX_SECONDS", 150) * 1_000;
const ONLY = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(",").map((s) => s.trim())) : undefined;
for (const id of ONLY ?? []) {
  if (id !== "trivial" && id !== "transport" && !SCENARIOS.some((s) => s.id === id)) {
    throw new Error(
      `BENCH_ONLY: unknown scenario ${JSON.stringify(id)} (known: ${[...SCENARIOS.map((s) => s.id), "trivial", "transport"].join(", ")})`,
    );
  }
}
const SERVER_NODE_ARGS = env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${env.BENCH_CPU_PROF_DIR}`] : [];

const started = performance.now();
const softDeadline = started + MAX_MS;

// ------------------------------------------------------------------ measuring

interface Phase {
  warmup: number;
  iterations: number;
  budgetMs: number;
}

interface Measured extends Summary {
  /** Fewer calls than asked because the phase's time budget ran out. */
  truncated: boolean;
}

/**
 * Runs `warmup` unrecorded calls, then up to `iterations` recorded ones, one in flight at a time.
 * Only the call itself is timed; `check` runs after the clock stopped. `k` numbers the calls of the
 * phase (warm-up included), so callers can derive the units of each call from it.
 */
async function measure(
  phase: Phase,
  call: (k: number) => Promise<Outcome | undefined>,
  check: (o: Outcome | undefined, k: number) => void,
): Promise<Measured> {
  const deadline = Math.min(performance.now() + phase.budgetMs, softDeadline);
  let k = 0;
  for (; k < phase.warmup && performance.now() < deadline; k++) check(await call(k), k);
  const samples: number[] = [];
  const t0 = performance.now();
  for (; samples.length < phase.iterations && performance.now() < deadline; k++) {
    const s = performance.now();
    const out = await call(k);
    samples.push(performance.now() - s);
    check(out, k);
  }
  const wall = performance.now() - t0;
  return { ...summarize(samples, wall), truncated: samples.length < phase.iterations };
}

function expectAll(o: Outcome | undefined, cells: number, reason: Reason, what: string): void {
  if (!o || o.reasons.length !== cells || o.stored.length !== cells) {
    throw new Error(`${what}: expected ${cells} answers, got ${o?.reasons.length ?? 0}`);
  }
  for (let i = 0; i < cells; i++) {
    if (o.reasons[i] !== reason || !o.stored[i]) {
      throw new Error(`${what}: cell ${i} answered ${Reason[o.reasons[i]]} (stored=${o.stored[i]}), expected ${Reason[reason]} stored`);
    }
  }
}

function expectLayer(o: Outcome, layer: Layer, what: string): void {
  const bad = o.layers.findIndex((l) => l !== layer);
  if (bad >= 0 || o.layers.length === 0) {
    throw new Error(`${what}: cell ${bad} came from layer ${Layer[o.layers[bad] ?? 0]}, expected ${Layer[layer]}`);
  }
}

// ------------------------------------------------------------------ results

interface Row {
  scenario: Scenario;
  warm?: Measured;
  cold?: Measured;
  /** The same phases against the server without the in-process cache. */
  redisOnly?: Measured;
  coldRedisOnly?: Measured;
}

const fmtRate = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—");

function mark(v: number | undefined, target: number): string {
  if (v === undefined || Number.isNaN(v)) return "—";
  return `${ms(v)} ${v <= target ? "✅" : "❌"}`;
}

/** The same unary call (Assign, 1 unit × 1 experiment, warm) over each transport of one server. */
interface TransportRow {
  name: string;
  measured: Measured;
}

function report(rows: Row[], trivial: Measured | undefined, transports: TransportRow[], machine: string[]): string {
  const out: string[] = [];
  out.push("### Environment", "", ...machine.map((m) => `- ${m}`), "");
  out.push("### Latency per call (one call in flight; ✅/❌ = at or under / over the target)", "");
  out.push("| scenario | warm p50 | warm p99 | cold p50 | cold p99 | target warm ≤ | target cold ≤ | old design (warm / cold) |");
  out.push("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const s = r.scenario;
    out.push(
      `| ${s.title} | ${mark(r.warm?.p50, s.target.warm)} | ${mark(r.warm?.p99, s.target.warm)} | ` +
        `${mark(r.cold?.p50, s.target.cold)} | ${mark(r.cold?.p99, s.target.cold)} | ${ms(s.target.warm)} | ${ms(s.target.cold)} | ` +
        `${s.old.warm} / ${s.old.cold} ms |`,
    );
    if (r.redisOnly || r.coldRedisOnly) {
      out.push(
        `| ↳ same, in-process cache off (MEMORY_CACHE_ENTRIES=0; warm = Redis hits) | ${ms(r.redisOnly?.p50)} | ${ms(r.redisOnly?.p99)} | ` +
          `${ms(r.coldRedisOnly?.p50)} | ${ms(r.coldRedisOnly?.p99)} | — | — | — |`,
      );
    }
  }
  if (trivial)
    out.push(`| grpc-js trivial unary (empty echo, no protobuf) | ${ms(trivial.p50)} | ${ms(trivial.p99)} | n/a | n/a | — | — | — |`);
  if (transports.length > 0) {
    const grpcP50 = transports[0]!.measured.p50;
    out.push("", "### Unary Assign by transport (1 unit × 1 experiment, warm; same server, same run)", "");
    out.push("| transport | p50 | p99 | calls/s | p50 / gRPC p50 |");
    out.push("|---|---|---|---|---|");
    for (const t of transports) {
      out.push(
        `| ${t.name} | ${ms(t.measured.p50)} | ${ms(t.measured.p99)} | ${fmtRate(t.measured.callsPerSecond)} | ${(t.measured.p50 / grpcP50).toFixed(2)} |`,
      );
    }
  }
  out.push("", "### All phases", "");
  out.push("| phase | calls | p50 | p99 | mean | min | max | calls/s | cells/s |");
  out.push("|---|---|---|---|---|---|---|---|---|");
  const line = (name: string, m: Measured | undefined, cells: number) => {
    if (!m) return;
    out.push(
      `| ${name} | ${m.n}${m.truncated ? " (time budget)" : ""} | ${ms(m.p50)} | ${ms(m.p99)} | ${ms(m.mean)} | ${ms(m.min)} | ` +
        `${ms(m.max)} | ${fmtRate(m.callsPerSecond)} | ${fmtRate(m.callsPerSecond * cells)} |`,
    );
  };
  for (const r of rows) {
    line(`${r.scenario.id} warm`, r.warm, r.scenario.cells);
    line(`${r.scenario.id} warm, Redis only`, r.redisOnly, r.scenario.cells);
    line(`${r.scenario.id} cold`, r.cold, r.scenario.cells);
    line(`${r.scenario.id} cold, in-process cache off`, r.coldRedisOnly, r.scenario.cells);
  }
  line("grpc-js trivial unary", trivial, 1);
  for (const t of transports) line(`Assign 1x1 warm, ${t.name}`, t.measured, 1);
  return out.join("\n");
}

// ------------------------------------------------------------------ the run

function checkAlive(...servers: ServerProcess[]): void {
  for (const c of servers) if (c.hasExited()) throw new Error(`server ${c.label} ${c.exitReason()}`);
}

/**
 * Warm: a pool of `warmPool` distinct requests (distinct units) is assigned once (stored in
 * PostgreSQL, filled into Redis and the in-process cache), every pool request is then checked to
 * be answered from the expected layer, and the measured calls cycle through the pool.
 */
async function runWarm(row: Row, a: AssignmentClient, b: AssignmentClient, servers: ServerProcess[]): Promise<void> {
  const s = row.scenario;
  const pool = Array.from({ length: s.warmPool }, (_, k) => Array.from({ length: s.units }, (_, j) => `w-${s.id}-${k}-${j}`));
  for (const [k, units] of pool.entries()) expectAll(await s.call(a, units, false), s.cells, Reason.NEW, `${s.id} prime ${k}`);
  for (const [k, units] of pool.entries()) {
    expectLayer(await s.call(a, units, true), Layer.MEMORY, `${s.id} warm check ${k} (in-process cache)`);
    expectLayer(await s.call(b, units, true), Layer.REDIS, `${s.id} warm check ${k} (Redis only)`);
  }
  const warmCall = (client: AssignmentClient) => (k: number) => s.call(client, pool[k % pool.length], false);
  const sticky = (what: string) => (o: Outcome | undefined) => expectAll(o, s.cells, Reason.STICKY, what);
  log(`${s.id}: warm …`);
  row.warm = await measure(WARM, warmCall(a), sticky(`${s.id} warm`));
  checkAlive(...servers);
  log(`${s.id}: warm, Redis only …`);
  row.redisOnly = await measure(WARM, warmCall(b), sticky(`${s.id} warm, Redis only`));
  checkAlive(...servers);
  log(
    `${s.id}: warm p50 ${ms(row.warm.p50)} p99 ${ms(row.warm.p99)} | Redis only p50 ${ms(row.redisOnly.p50)} p99 ${ms(row.redisOnly.p99)}`,
  );
}

/** Cold: every call (warm-up included) names units never seen before; all must come back NEW and
 * stored, i.e. inserted into PostgreSQL before the reply. The server without the in-process cache
 * goes first (the other one's cold phase is the one compared with the targets). */
async function runCold(row: Row, a: AssignmentClient, b: AssignmentClient, servers: ServerProcess[]): Promise<void> {
  const s = row.scenario;
  const cold = (client: AssignmentClient, tag: string) => (k: number) =>
    s.call(
      client,
      Array.from({ length: s.units }, (_, j) => `c${tag}-${s.id}-${k}-${j}`),
      false,
    );
  const fresh = (what: string) => (o: Outcome | undefined) => expectAll(o, s.cells, Reason.NEW, what);
  log(`${s.id}: cold, in-process cache off …`);
  row.coldRedisOnly = await measure(COLD, cold(b, "b"), fresh(`${s.id} cold, in-process cache off`));
  checkAlive(...servers);
  log(`${s.id}: cold …`);
  row.cold = await measure(COLD, cold(a, "a"), fresh(`${s.id} cold`));
  checkAlive(...servers);
  log(
    `${s.id}: cold p50 ${ms(row.cold.p50)} p99 ${ms(row.cold.p99)} | in-process cache off p50 ${ms(row.coldRedisOnly.p50)} p99 ${ms(row.coldRedisOnly.p99)}`,
  );
}

/**
 * The same warm unary call, Assign of one stored unit to one experiment, over gRPC (the typed
 * client, HTTP/2) and over the HTTP port (a Connect client of @connectrpc/connect-node over
 * HTTP/1.1 with keep-alive: binary protobuf, then JSON), against the same server process, one
 * phase after the other. Every answer is checked to be STICKY and stored.
 */
async function runTransports(a: AssignmentClient, server: ServerProcess, servers: ServerProcess[]): Promise<TransportRow[]> {
  const httpPort = (server.announcement.serverProcess as { httpPort?: number } | undefined)?.httpPort;
  if (!httpPort) throw new Error("the server did not announce its HTTP port");
  const pool = Array.from({ length: 200 }, (_, k) => `t-${k}`);
  const key = EXPERIMENT_KEYS[0]!;
  for (const unitId of pool) await a.assign({ experimentKey: key, unitId });
  const sticky = (what: string) => (o: Outcome | undefined) => expectAll(o, 1, Reason.STICKY, what);
  const viaGrpc = async (k: number): Promise<Outcome> => {
    const { assignment } = await a.assign({ experimentKey: key, unitId: pool[k % pool.length]! });
    return { reasons: [assignment!.reason], stored: [assignment!.stored], layers: [] };
  };
  const out: TransportRow[] = [];
  log("transport: gRPC …");
  out.push({ name: "gRPC (grpc-js, HTTP/2, protobuf)", measured: await measure(WARM, viaGrpc, sticky("gRPC")) });
  checkAlive(...servers);
  for (const json of [false, true]) {
    const name = `Connect (connect-node, HTTP/1.1, ${json ? "JSON" : "protobuf"})`;
    log(`transport: ${name} …`);
    const c = connectAssignClient(`http://127.0.0.1:${httpPort}`, json);
    out.push({ name, measured: await measure(WARM, (k) => c.assign(key, pool[k % pool.length]!), sticky(name)) });
    checkAlive(...servers);
  }
  log(`transport: ${out.map((t) => `${t.name} p50 ${ms(t.measured.p50)}`).join(" | ")}`);
  return out;
}

/** "commit abc1234", plus a note when src/, gen/ or proto/ differ from it: what was measured. */
function codeVersion(): string {
  const git = (...args: string[]) => spawnSync("git", args, { cwd: new URL("..", import.meta.url), encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return "code: not a git checkout";
  const dirty = git("status", "--porcelain", "--", "src", "gen", "proto", "migrations").stdout.trim();
  return `code: commit ${head.stdout.trim()}${dirty ? ` + uncommitted changes (${dirty.split("\n").length} files under src/ gen/ proto/ migrations/)` : ""}`;
}

async function main(cleanup: Cleanup): Promise<number> {
  const [pgVersion, redisVersion] = await Promise.all([probePostgres(ADMIN_DATABASE_URL), probeRedis(REDIS_URL)]);
  const machine = [
    `${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? "?"}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.platform()} ${os.release()}`,
    `Node ${process.version}; ${pgVersion}; ${redisVersion}; all on this machine (loopback)`,
    `date ${new Date().toISOString()}`,
    `client: this process; servers: separate processes (${import.meta.url.endsWith(".js") ? "compiled, plain node" : "node + tsx loader"}), LOG_LEVEL=warn`,
    codeVersion(),
  ];

  const db = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const prefix = `bench:${randomBytes(6).toString("hex")}:`;
  cleanup.add(`remove Redis keys ${prefix}*`, async () =>
    log(`removed ${await flushPrefix(REDIS_URL, prefix)} Redis keys under ${prefix}`),
  );
  log(`database ${db.name} on ${redactUrl(ADMIN_DATABASE_URL)}, Redis prefix ${prefix} on ${redactUrl(REDIS_URL)}`);

  const wanted = (id: string) => !ONLY || ONLY.has(id);
  let trivial: Measured | undefined;
  if (wanted("trivial")) {
    log("grpc-js trivial unary …");
    const t = await startServerChild("trivial", {}, SERVER_NODE_ARGS, "trivial");
    cleanup.add("stop trivial server", t.stop);
    const c = trivialCaller(t.address);
    trivial = await measure(
      WARM,
      async () => {
        await c.call();
        return undefined;
      },
      () => {},
    );
    c.close();
    await t.stop();
  }

  // A short cache TTL, so that keys left behind by a run that could not clean up expire soon.
  const serverEnv = {
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    CACHE_TTL_SECONDS: "3600",
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? "warn",
  };
  // The measured server also serves the HTTP port, for the transport comparison.
  const a0 = await startServerChild("server", { ...serverEnv, HTTP_PORT: "0" }, SERVER_NODE_ARGS);
  cleanup.add("stop server", a0.stop);
  const admin = createClient(ExperimentService, a0.address, { timeoutMs: 10_000 });
  cleanup.add("close admin client", async () => admin.close());
  await createBenchExperiments(admin);
  // Started after the experiments exist, so its configuration holds them from the start.
  const b0 = await startServerChild("server-redis-only", { ...serverEnv, MEMORY_CACHE_ENTRIES: "0" }, SERVER_NODE_ARGS);
  cleanup.add("stop Redis-only server", b0.stop);
  log(`servers: ${a0.address} (pid ${a0.pid}), Redis only ${b0.address} (pid ${b0.pid})`);

  const a = createClient(AssignmentService, a0.address, { timeoutMs: 30_000 });
  const b = createClient(AssignmentService, b0.address, { timeoutMs: 30_000 });
  cleanup.add("close clients", async () => {
    a.close();
    b.close();
  });

  // Every warm phase first, then the cold ones: cold phases add over a million assignments,
  // more than the in-process cache holds, and must not evict the warm pools.
  const rows: Row[] = SCENARIOS.filter((s) => wanted(s.id)).map((scenario) => ({ scenario }));
  const skipped: string[] = [];
  const servers = [a0, b0];
  for (const row of rows) {
    if (performance.now() > softDeadline) skipped.push(`${row.scenario.id} warm`);
    else await runWarm(row, a, b, servers);
  }
  // Between the warm and the cold phases: a short one, on the server whose caches are warm.
  const transports: TransportRow[] = [];
  if (wanted("transport")) {
    if (performance.now() > softDeadline) skipped.push("transport");
    else transports.push(...(await runTransports(a, a0, servers)));
  }
  for (const row of rows) {
    if (performance.now() > softDeadline) skipped.push(`${row.scenario.id} cold`);
    else await runCold(row, a, b, servers);
  }
  admin.close();
  a.close();
  b.close();
  await Promise.all([a0.stop(), b0.stop()]);

  process.stdout.write(report(rows, trivial, transports, machine) + "\n");
  if (skipped.length > 0) log(`skipped (BENCH_MAX_SECONDS reached): ${skipped.join(", ")}`);
  const truncated = [...rows.flatMap((r) => [r.warm, r.redisOnly, r.cold, r.coldRedisOnly]), trivial].filter((m) => m?.truncated).length;
  if (truncated > 0) log(`${truncated} phase(s) stopped early at their time budget; see the calls column`);
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}

const cleanup = new Cleanup({ name: "bench" });
let exiting = false;
function exitAfterCleanup(code: number): void {
  if (exiting) return;
  exiting = true;
  void cleanup.run().finally(() => process.exit(code));
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    exitAfterCleanup(130);
  });
}
process.on("unhandledRejection", (err) => {
  log(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`);
  exitAfterCleanup(1);
});
// Hard stop: phases already respect the soft deadline; this catches a hung call or server.
setTimeout(() => {
  log(`hard time limit (${MAX_MS / 1000 + 20} s) reached: cleaning up and exiting`);
  exitAfterCleanup(1);
}, MAX_MS + 20_000).unref();

let code: number;
try {
  code = await main(cleanup);
} catch (err) {
  if (exiting) {
    // Interrupted: the calls in flight fail as the clients close; nothing to report.
  } else if (err instanceof Unreachable) log(`error: ${err.message}`);
  else log(`failed: ${(err as Error)?.stack ?? String(err)}`);
  code = err instanceof Unreachable ? 2 : 1;
}
if (!exiting) {
  exiting = true;
  await cleanup.run();
  process.exit(code);
}
