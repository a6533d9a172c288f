/**
 * `npm run bench:throughput`: requests per second with many calls in flight, next to the bare
 * grpc-js echo measured in the same run (the transport's floor on this machine). See
 * BENCHMARKS.md, "Throughput under concurrency".
 *
 * Warm calls (the same stored units again and again) are driven by h2load (Debian's
 * nghttp2-client), which sends one prepared gRPC request body over many HTTP/2 streams and costs
 * the machine far less than a Node client would. h2load counts an HTTP 200 as success even when
 * the gRPC status is not OK, so every phase is checked against the server's own call counter
 * (assignment_grpc_calls_total by code): every call of the phase must have ended OK, and their
 * number must equal what h2load says it completed. Cold calls need a new unit per call, which one
 * prepared body cannot give: a Node client sends them (so the cold rows include the client's
 * cost), and every answer is checked to be NEW and stored.
 *
 * Environment:
 *   DATABASE_URL, REDIS_URL       servers to use (default: local PostgreSQL and Redis)
 *   BENCH_THROUGHPUT_SECONDS      measured seconds per phase (10), after 2 s of warm-up (h2load)
 *   BENCH_CONCURRENCY             comma-separated calls in flight (16,64)
 *   H2LOAD                        the h2load binary (h2load)
 *   BENCH_CPU_PROF_DIR            write a V8 CPU profile of the assignment server there
 *   BENCH_ONLY                    comma-separated phases to run (echo,warm,bulk,cold,workers; default all)
 *   INSERT_CONCURRENCY, INSERT_MAX_WAIT_MS   the servers' cold-path coalescing (README), like any
 *                                 variable of this process's environment, which they inherit
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  AssignmentService,
  AssignUnitRequestSchema,
  BulkAssignRequestSchema,
  createClient,
  ExperimentService,
  Reason,
} from "assignment-client";
import { Cleanup } from "../harness/cleanup.js";
import { createDatabase, flushPrefix } from "../harness/databases.js";
import { freePort } from "../harness/free-port.js";
import { type ServerProcess, spawnServer } from "../harness/spawn-server.js";
import { TRIVIAL_PATH } from "../harness/trivial-echo.js";
import { log, probePostgres, probeRedis, redactUrl, startServerChild, Unreachable } from "./infra.js";
import { createBenchExperiments, EXPERIMENT_KEYS, type AssignmentClient } from "./scenarios.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const SECONDS = Number(env.BENCH_THROUGHPUT_SECONDS ?? 10);
const WARMUP_SECONDS = 2;
const CONCURRENCY = (env.BENCH_CONCURRENCY ?? "16,64").split(",").map((s) => Number(s.trim()));
const H2LOAD = env.H2LOAD ?? "h2load";
const PHASES = ["echo", "warm", "bulk", "cold", "workers"];
const ONLY = new Set((env.BENCH_ONLY ?? PHASES.join(",")).split(",").map((s) => s.trim()));
for (const p of ONLY)
  if (!PHASES.includes(p)) throw new Error(`BENCH_ONLY: unknown phase ${JSON.stringify(p)} (known: ${PHASES.join(", ")})`);
const SERVER_NODE_ARGS = env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${env.BENCH_CPU_PROF_DIR}`] : [];
for (const c of CONCURRENCY) if (!Number.isInteger(c) || c < 1) throw new Error(`BENCH_CONCURRENCY: ${c} is not a positive integer`);
if (!(SECONDS > 0)) throw new Error(`BENCH_THROUGHPUT_SECONDS must be a positive number`);

/** h2load's connections and streams per connection for `c` calls in flight: up to 4 connections
 * (a service's client pool), the rest as concurrent streams on each. */
function shape(c: number): { connections: number; streams: number } {
  const connections = Math.min(4, c);
  return { connections, streams: Math.ceil(c / connections) };
}

/** A gRPC message on the wire: uncompressed flag, 4-byte big-endian length, the bytes. */
function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

interface H2loadResult {
  requestsPerSecond: number;
  succeeded: number;
  failed: number;
  meanMs: number;
}

function h2load(url: string, bodyFile: string, concurrency: number): Promise<H2loadResult> {
  const { connections, streams } = shape(concurrency);
  const args = [
    "--duration",
    String(SECONDS),
    "--warm-up-time",
    String(WARMUP_SECONDS),
    "-c",
    String(connections),
    "-m",
    String(streams),
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "-d",
    bodyFile,
    url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(H2LOAD, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", (err) =>
      reject(new Unreachable(`cannot run ${H2LOAD}: ${err.message} (Debian package nghttp2-client; or set H2LOAD)`)),
    );
    child.on("close", (code) => {
      const rate = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out);
      const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(out);
      const time = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out);
      if (code !== 0 || !rate || !requests) return reject(new Error(`h2load ${args.join(" ")} failed (exit ${code}):\n${out}`));
      const meanText = time?.[1] ?? "";
      const meanMs = meanText.endsWith("us")
        ? Number.parseFloat(meanText) / 1000
        : meanText.endsWith("ms")
          ? Number.parseFloat(meanText)
          : Number.parseFloat(meanText) * 1000;
      resolve({ requestsPerSecond: Number(rate[1]), succeeded: Number(requests[1]), failed: Number(requests[2]), meanMs });
    });
  });
}

/** assignment_grpc_calls_total of one method, by code, and the server's CPU seconds so far
 * (process_cpu_seconds_total), from its metrics endpoint. */
async function callsByCode(metricsPort: number, method: string): Promise<{ byCode: Map<string, number>; cpuSeconds: number }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const cpuSeconds = Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  const byCode = new Map<string, number>();
  const re = /^assignment_grpc_calls_total\{([^}]*)\} (\S+)$/gm;
  for (const m of text.matchAll(re)) {
    const labels = Object.fromEntries([...(m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.method === method) byCode.set(labels.code ?? "?", (byCode.get(labels.code ?? "?") ?? 0) + Number(m[2]));
  }
  return { byCode, cpuSeconds };
}

/** Rows per INSERT of new assignments so far: assignment_store_insert_rows' sum and count. */
async function insertRows(metricsPort: number): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return {
    sum: Number(/^assignment_store_insert_rows_sum (\S+)$/m.exec(text)?.[1] ?? 0),
    count: Number(/^assignment_store_insert_rows_count (\S+)$/m.exec(text)?.[1] ?? 0),
  };
}

interface Row {
  call: string;
  cellsPerCall: number;
  concurrency: number;
  requestsPerSecond: number;
  meanMs: number;
  rowsPerInsert?: number;
  /** Median and 99th percentile latency, where the generator gives each call's (the node client). */
  p50Ms?: number;
  p99Ms?: number;
  /** The server's CPU time (user + system) per call over the phase, warm-up included: unlike
   * requests/s, it barely moves when other processes compete for the cores. */
  cpuMicrosPerCall?: number;
  /** The 1-minute load average at the end of the phase. */
  loadAverage?: string;
  generator: string;
}

/** One h2load phase against the assignment server, checked against its call counter. */
async function h2loadPhase(server: ServerProcess, metricsPort: number, method: string, body: Buffer, dir: string, concurrency: number) {
  const file = path.join(dir, `${method}.bin`);
  writeFileSync(file, body);
  const { byCode: before, cpuSeconds: cpuBefore } = await callsByCode(metricsPort, method);
  const r = await h2load(`http://${server.address}/assignment.v1.AssignmentService/${method}`, file, concurrency);
  const { byCode: after, cpuSeconds: cpuAfter } = await callsByCode(metricsPort, method);
  const delta = new Map([...after].map(([code, n]) => [code, n - (before.get(code) ?? 0)]));
  // When h2load stops, the calls still uploading their request are cut off: grpc-js ends them
  // UNIMPLEMENTED ("received no request message") or CANCELLED. At most one per call in flight;
  // any other code, or more of these, is a real failure.
  const cutOff = (delta.get("UNIMPLEMENTED") ?? 0) + (delta.get("CANCELLED") ?? 0);
  const notOk = [...delta].filter(([code, n]) => code !== "OK" && code !== "UNIMPLEMENTED" && code !== "CANCELLED" && n > 0);
  if (notOk.length > 0 || cutOff > concurrency) {
    throw new Error(
      `${method} c${concurrency}: calls ended ${[...delta]
        .filter(([c, n]) => c !== "OK" && n > 0)
        .map(([c, n]) => `${n}× ${c}`)
        .join(", ")}`,
    );
  }
  const ok = delta.get("OK") ?? 0;
  // h2load counts the warm-up's calls apart; the server counted both.
  if (r.failed > 0 || ok < r.succeeded) {
    throw new Error(`${method} c${concurrency}: h2load says ${r.succeeded} succeeded and ${r.failed} failed, the server counted ${ok} OK`);
  }
  return { ...r, cpuMicrosPerCall: ((cpuAfter - cpuBefore) * 1e6) / ok };
}

/** Cold calls: `concurrency` loops, each sending AssignUnit for a new unit as soon as its last
 * answer came, spread over 4 clients (channels); every answer must be NEW and stored. */
async function coldPhase(
  address: string,
  concurrency: number,
  tag: string,
): Promise<{ requestsPerSecond: number; meanMs: number; p50Ms: number; p99Ms: number }> {
  const clients: AssignmentClient[] = Array.from({ length: Math.min(4, concurrency) }, () =>
    createClient(AssignmentService, address, { timeoutMs: 30_000, channelOptions: { "grpc.use_local_subchannel_pool": 1 } }),
  );
  let next = 0;
  let done = 0;
  let busyMs = 0;
  const latencies: number[] = [];
  let measuring = false;
  const warmupEnd = performance.now() + WARMUP_SECONDS * 1000;
  const end = warmupEnd + SECONDS * 1000;
  const loop = async (i: number) => {
    const client = clients[i % clients.length]!;
    while (performance.now() < end) {
      const unit = `cold-${tag}-${next++}`;
      const t0 = performance.now();
      const res = await client.assignUnit({ units: { user_id: unit }, experimentKeys: EXPERIMENT_KEYS });
      const t1 = performance.now();
      const bad = res.assignments.find((a) => a.reason !== Reason.NEW || !a.stored);
      if (res.assignments.length !== EXPERIMENT_KEYS.length || bad) {
        throw new Error(
          `cold ${unit}: expected ${EXPERIMENT_KEYS.length} NEW stored answers, got ${res.assignments.length} (${bad ? Reason[bad.reason] : ""})`,
        );
      }
      if (t0 >= warmupEnd && t1 <= end) {
        measuring = true;
        done++;
        busyMs += t1 - t0;
        latencies.push(t1 - t0);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  for (const c of clients) c.close();
  if (!measuring) throw new Error("cold phase measured no call");
  latencies.sort((a, b) => a - b);
  return {
    requestsPerSecond: done / SECONDS,
    meanMs: busyMs / done,
    p50Ms: latencies[Math.floor(latencies.length / 2)]!,
    p99Ms: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!,
  };
}

const ms = (x: number | undefined) => (x === undefined ? "—" : `${x.toFixed(2)} ms`);

/** The 1-minute load average now, for a row measured on a shared machine. */
const loadNow = () => os.loadavg()[0]!.toFixed(1);

function report(rows: Row[], machine: string[]): string {
  const echo = new Map(rows.filter((r) => r.call === "echo").map((r) => [r.concurrency, r.requestsPerSecond]));
  const out = ["### Environment", "", ...machine.map((m) => `- ${m}`), ""];
  out.push("### Throughput (calls in flight = concurrency; ratio = requests/s ÷ the bare echo at the same concurrency, same run)", "");
  out.push(
    "| call | concurrency | requests/s | cells/s | ÷ echo | mean latency | p50 latency | p99 latency | rows per INSERT | server CPU per call | load average | generator |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    // No echo at this concurrency (BENCH_ONLY without echo): no ratio, rather than "NaN".
    const floor = echo.get(r.concurrency);
    const ratio = r.call === "echo" ? "1.00" : floor === undefined ? "—" : (r.requestsPerSecond / floor).toFixed(2);
    out.push(
      `| ${r.call} | ${r.concurrency} | ${Math.round(r.requestsPerSecond).toLocaleString("en-US")} | ` +
        `${Math.round(r.requestsPerSecond * r.cellsPerCall).toLocaleString("en-US")} | ${ratio} | ${r.meanMs.toFixed(2)} ms | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ` +
        `${r.rowsPerInsert === undefined ? "—" : r.rowsPerInsert.toFixed(1)} | ` +
        `${r.cpuMicrosPerCall === undefined ? "—" : `${Math.round(r.cpuMicrosPerCall)} µs`} | ${r.loadAverage ?? "—"} | ${r.generator} |`,
    );
  }
  return out.join("\n");
}

async function main(cleanup: Cleanup): Promise<number> {
  const version = spawnSync(H2LOAD, ["--version"], { encoding: "utf8" });
  if (version.status !== 0) throw new Unreachable(`cannot run ${H2LOAD} (Debian package nghttp2-client; or set H2LOAD)`);
  const [pgVersion, redisVersion] = await Promise.all([probePostgres(ADMIN_DATABASE_URL), probeRedis(REDIS_URL)]);
  const machine = [
    `${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? "?"}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM`,
    `Node ${process.version}; ${pgVersion}; ${redisVersion}; ${version.stdout.trim().split("\n")[0]}; all on this machine (loopback)`,
    `${SECONDS} s per phase after ${WARMUP_SECONDS} s of warm-up; h2load: up to 4 connections, the rest as streams per connection`,
    `date ${new Date().toISOString()}`,
  ];
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-throughput-"));
  cleanup.add("remove request bodies", async () => rmSync(dir, { recursive: true, force: true }));

  const db = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const prefix = `bench:${randomBytes(6).toString("hex")}:`;
  cleanup.add(`remove Redis keys ${prefix}*`, async () => void (await flushPrefix(REDIS_URL, prefix)));
  log(`database ${db.name} on ${redactUrl(ADMIN_DATABASE_URL)}, Redis prefix ${prefix}`);

  const rows: Row[] = [];
  const echoServer = await startServerChild("echo", {}, [], "trivial");
  cleanup.add("stop echo server", echoServer.stop);
  const echoBody = path.join(dir, "echo.bin");
  writeFileSync(echoBody, grpcFrame(new Uint8Array(0)));
  for (const c of ONLY.has("echo") ? CONCURRENCY : []) {
    log(`echo c${c} …`);
    const r = await h2load(`http://${echoServer.address}${TRIVIAL_PATH}`, echoBody, c);
    if (r.failed > 0) throw new Error(`echo c${c}: ${r.failed} failed`);
    rows.push({
      call: "echo",
      cellsPerCall: 1,
      concurrency: c,
      requestsPerSecond: r.requestsPerSecond,
      meanMs: r.meanMs,
      generator: "h2load",
    });
  }
  await echoServer.stop();

  const server = await startServerChild(
    "server",
    {
      DATABASE_URL: db.url,
      REDIS_URL,
      REDIS_PREFIX: prefix,
      CACHE_TTL_SECONDS: "3600",
      METRICS_PORT: "0",
      LOG_LEVEL: env.BENCH_LOG_LEVEL ?? "warn",
    },
    SERVER_NODE_ARGS,
  );
  cleanup.add("stop server", server.stop);
  const metricsPort = (server.announcement.serverProcess as { metricsPort?: number } | undefined)?.metricsPort;
  if (!metricsPort) throw new Error("the server did not announce a metrics port");
  const admin = createClient(ExperimentService, server.address, { timeoutMs: 10_000 });
  cleanup.add("close admin client", async () => admin.close());
  await createBenchExperiments(admin);
  const client = createClient(AssignmentService, server.address, { timeoutMs: 30_000 });
  cleanup.add("close client", async () => client.close());

  // Warm: the unit and the 1,000 bulk units are stored (and cached) before the measured calls.
  const unitReq = create(AssignUnitRequestSchema, { units: { user_id: "warm-unit" }, experimentKeys: EXPERIMENT_KEYS });
  const bulkUnits = Array.from({ length: 1_000 }, (_, i) => `warm-bulk-${i}`);
  const bulkReq = create(BulkAssignRequestSchema, { experimentKey: EXPERIMENT_KEYS[0]!, unitIds: bulkUnits });
  await client.assignUnit(unitReq);
  await client.bulkAssign(bulkReq);
  const again = await client.assignUnit(unitReq);
  if (again.assignments.length !== EXPERIMENT_KEYS.length || again.assignments.some((a) => a.reason !== Reason.STICKY)) {
    throw new Error("warm unit: expected STICKY answers after priming");
  }
  const unitBody = grpcFrame(toBinary(AssignUnitRequestSchema, unitReq));
  const bulkBody = grpcFrame(toBinary(BulkAssignRequestSchema, bulkReq));
  for (const c of ONLY.has("warm") ? CONCURRENCY : []) {
    log(`AssignUnit 1×10 warm c${c} …`);
    const r = await h2loadPhase(server, metricsPort, "AssignUnit", unitBody, dir, c);
    rows.push({
      call: "AssignUnit 1×10, warm",
      cellsPerCall: 10,
      concurrency: c,
      requestsPerSecond: r.requestsPerSecond,
      meanMs: r.meanMs,
      cpuMicrosPerCall: r.cpuMicrosPerCall,
      generator: "h2load",
    });
  }
  for (const c of ONLY.has("bulk") ? CONCURRENCY : []) {
    log(`BulkAssign 1,000 warm c${c} …`);
    const r = await h2loadPhase(server, metricsPort, "BulkAssign", bulkBody, dir, c);
    rows.push({
      call: "BulkAssign 1,000, warm",
      cellsPerCall: 1_000,
      concurrency: c,
      requestsPerSecond: r.requestsPerSecond,
      meanMs: r.meanMs,
      cpuMicrosPerCall: r.cpuMicrosPerCall,
      generator: "h2load",
    });
  }
  let coldCallsBefore = (await callsByCode(metricsPort, "AssignUnit")).byCode.get("OK") ?? 0;
  for (const c of ONLY.has("cold") ? CONCURRENCY : []) {
    log(`AssignUnit 1×10 cold c${c} …`);
    const before = await insertRows(metricsPort);
    const { cpuSeconds: cpuBefore } = await callsByCode(metricsPort, "AssignUnit");
    const r = await coldPhase(server.address, c, `c${c}`);
    const { byCode, cpuSeconds: cpuAfter } = await callsByCode(metricsPort, "AssignUnit");
    const after = await insertRows(metricsPort);
    const rowsPerInsert = (after.sum - before.sum) / Math.max(1, after.count - before.count);
    // Server CPU per call over the phase (warm-up included), against every OK call of the phase.
    const calls = (byCode.get("OK") ?? 0) - coldCallsBefore;
    coldCallsBefore += calls;
    rows.push({
      call: "AssignUnit 1×10, cold (10 rows stored per call)",
      cellsPerCall: 10,
      concurrency: c,
      requestsPerSecond: r.requestsPerSecond,
      meanMs: r.meanMs,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      rowsPerInsert,
      cpuMicrosPerCall: ((cpuAfter - cpuBefore) * 1e6) / Math.max(1, calls),
      loadAverage: loadNow(),
      generator: "node client",
    });
  }
  if (ONLY.has("workers")) {
    // The same warm and cold page loads against WORKERS=2 (src/cluster.ts: npm start itself),
    // on the same database and Redis, after the single server stopped.
    await server.stop();
    const workersMetrics = await freePort();
    const two = await spawnServer({
      label: "server (2 workers)",
      mode: "main",
      env: {
        WORKERS: "2",
        DATABASE_URL: db.url,
        REDIS_URL,
        REDIS_PREFIX: prefix,
        CACHE_TTL_SECONDS: "3600",
        INSECURE_DEV_MODE: "1",
        PORT: String(await freePort()),
        METRICS_PORT: String(workersMetrics),
        // "serving" (info) is what announces the port; calls are logged at debug only.
        LOG_LEVEL: "info",
      },
      startTimeoutMs: 60_000,
    });
    cleanup.add("stop the 2-worker server", two.stop);
    // A worker's own "serving" line is the announcement; wait until the primary says both serve.
    while (!two.messages.some((m) => m.msg === "serving" && m.workers === 2)) {
      if (two.hasExited()) throw new Error(`the 2-worker server ${two.exitReason()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const c2 = createClient(AssignmentService, two.address, { timeoutMs: 30_000 });
    const sticky = await c2.assignUnit(unitReq);
    c2.close();
    if (sticky.assignments.some((a) => a.reason !== Reason.STICKY)) throw new Error("2 workers: the warm unit is not STICKY");
    for (const c of CONCURRENCY) {
      log(`AssignUnit 1×10 warm c${c}, 2 workers …`);
      const r = await h2loadPhase(two, workersMetrics, "AssignUnit", unitBody, dir, c);
      rows.push({
        call: "AssignUnit 1×10, warm, WORKERS=2",
        cellsPerCall: 10,
        concurrency: c,
        requestsPerSecond: r.requestsPerSecond,
        meanMs: r.meanMs,
        cpuMicrosPerCall: r.cpuMicrosPerCall,
        generator: "h2load",
      });
    }
    for (const c of CONCURRENCY) {
      log(`AssignUnit 1×10 cold c${c}, 2 workers …`);
      const before = await insertRows(workersMetrics);
      const r = await coldPhase(two.address, c, `w2c${c}`);
      const after = await insertRows(workersMetrics);
      rows.push({
        call: "AssignUnit 1×10, cold, WORKERS=2",
        cellsPerCall: 10,
        concurrency: c,
        requestsPerSecond: r.requestsPerSecond,
        meanMs: r.meanMs,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        rowsPerInsert: (after.sum - before.sum) / Math.max(1, after.count - before.count),
        loadAverage: loadNow(),
        generator: "node client",
      });
    }
    await two.stop();
  }
  process.stdout.write(`${report(rows, machine)}\n`);
  return 0;
}

const cleanup = new Cleanup({ name: "bench:throughput" });
let code: number;
try {
  code = await main(cleanup);
} catch (err) {
  if (err instanceof Unreachable) log(`error: ${err.message}`);
  else log(`failed: ${(err as Error)?.stack ?? String(err)}`);
  code = err instanceof Unreachable ? 2 : 1;
}
await cleanup.run();
process.exit(code);
