/**
 * Warm AssignUnit 1×10 of two or more builds, and the bare grpc-js echo, in alternating rounds:
 * server CPU per call from /proc/<pid>/stat over exactly the calls of a round (h2load -n), so that
 * builds can be compared on a machine shared with others (BENCHMARKS.md, "Warm AssignUnit 1×10
 * again"). Each build is a compiled tree (`npm run build` writes dist/; copy it before changing the
 * code, e.g. `cp -r dist dist-main`); every server runs on one fresh database and Redis prefix.
 *
 *   node scripts/throughput-ab.mjs dist-main dist            one server at a time, echo included
 *   PARALLEL=1 node scripts/throughput-ab.mjs dist-main dist all builds at the same moment, each
 *                                                            under its own h2load (same machine)
 *   A build may carry Node flags after a colon: "dist:--max-semi-space-size=64".
 *
 * Environment: DATABASE_URL, REDIS_URL (local defaults); CONCURRENCY (16); CALLS per round (20000);
 * ROUND_SECONDS per parallel round (6); ROUNDS (6); CPU_PROF_DIR (a V8 CPU profile of each server).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const env = process.env;
const builds = process.argv.slice(2);
if (builds.length === 0) throw new Error("usage: node scripts/throughput-ab.mjs <build dir>[:<node flags>] ...");
const dirOf = (b) => path.resolve(ROOT, b.split(":")[0]);
const flagsOf = (b) => (b.split(":")[1] ?? "").split(" ").filter(Boolean);
const load = (b, file) => import(pathToFileURL(path.join(dirOf(b), file)).href);
const CONCURRENCY = Number(env.CONCURRENCY ?? 16);
const CALLS = Number(env.CALLS ?? 20_000);
const ROUND_SECONDS = Number(env.ROUND_SECONDS ?? 6);
const ROUNDS = Number(env.ROUNDS ?? 6);
const PARALLEL = env.PARALLEL === "1";
const ADMIN_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";

const { spawnServer } = await load(builds[0], "harness/spawn-server.js");
const { createDatabase, flushPrefix } = await load(builds[0], "harness/databases.js");
const { createBenchExperiments, EXPERIMENT_KEYS } = await load(builds[0], "bench/scenarios.js");
const { create, toBinary } = await import("@bufbuild/protobuf");
const { AssignmentService, AssignUnitRequestSchema, ExperimentService, createClient, Reason } = await import("assignment-client");

/** User + system CPU seconds of a process so far (utime and stime, in clock ticks of 1/100 s). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One h2load run against a target: a fixed number of calls, or a fixed time (parallel rounds). */
function h2load(target, { calls, seconds }) {
  const connections = Math.min(4, CONCURRENCY);
  const streams = Math.ceil(CONCURRENCY / connections);
  const amount = calls ? ["-n", String(calls)] : ["-D", String(seconds)];
  const args = [...amount, "-c", String(connections), "-m", String(streams), "-H", "content-type: application/grpc", "-H", "te: trailers"];
  return new Promise((resolve, reject) => {
    const cpu0 = cpuSeconds(target.pid);
    const t0 = performance.now();
    const child = spawn("h2load", [...args, "-d", target.body, target.url]);
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", () => {
      const cpu = cpuSeconds(target.pid) - cpu0;
      const m = /(\d+) succeeded, (\d+) failed/.exec(out);
      if (!m || Number(m[2]) > 0) return reject(new Error(`h2load ${target.url}:\n${out}`));
      const n = Number(m[1]);
      resolve({ rps: n / (calls ? (performance.now() - t0) / 1000 : seconds), us: (cpu * 1e6) / n });
    });
  });
}

const dir = mkdtempSync(path.join(os.tmpdir(), "throughput-ab-"));
const db = await createDatabase(ADMIN_URL, "bench_");
const prefix = `bench:ab-${db.name}:`;
const servers = [];
const cleanup = async () => {
  for (const s of servers) await s.stop().catch(() => {});
  await db.drop().catch(() => {});
  await flushPrefix(REDIS_URL, prefix).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
};
process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
try {
  const profile = (name) =>
    env.CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${env.CPU_PROF_DIR}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  const frame = (m) => {
    const f = Buffer.alloc(5 + m.length);
    f.writeUInt32BE(m.length, 1);
    f.set(m, 5);
    return f;
  };
  const req = create(AssignUnitRequestSchema, { units: { user_id: "warm-unit" }, experimentKeys: EXPERIMENT_KEYS });
  const unitBody = path.join(dir, "unit.bin");
  const echoBody = path.join(dir, "echo.bin");
  writeFileSync(unitBody, frame(toBinary(AssignUnitRequestSchema, req)));
  writeFileSync(echoBody, frame(new Uint8Array(0)));
  const targets = new Map();
  const echo = await spawnServer({ label: "echo", mode: "trivial", nodeArgs: profile("echo"), startTimeoutMs: 30_000 });
  servers.push(echo);
  targets.set("echo", { url: `http://${echo.address}/bench.Trivial/Echo`, body: echoBody, pid: echo.pid });
  for (const [i, b] of builds.entries()) {
    const { spawnServer: spawnOf } = await load(b, "harness/spawn-server.js");
    const s = await spawnOf({
      label: b,
      nodeArgs: [...flagsOf(b), ...profile(`build-${i}`)],
      startTimeoutMs: 60_000,
      env: { DATABASE_URL: db.url, REDIS_URL, REDIS_PREFIX: prefix, CACHE_TTL_SECONDS: "3600", LOG_LEVEL: "warn" },
    });
    servers.push(s);
    targets.set(b, { url: `http://${s.address}/assignment.v1.AssignmentService/AssignUnit`, body: unitBody, pid: s.pid });
    if (i === 0) {
      const admin = createClient(ExperimentService, s.address, { timeoutMs: 10_000 });
      await createBenchExperiments(admin);
      admin.close();
    }
    const client = createClient(AssignmentService, s.address, { timeoutMs: 30_000 });
    await client.assignUnit(req); // stores the unit; the next call is STICKY, from memory
    if ((await client.assignUnit(req)).assignments.some((a) => a.reason !== Reason.STICKY))
      throw new Error(`${b}: the warm unit is not STICKY`);
    client.close();
  }
  for (const t of targets.values()) await h2load(t, { calls: 5_000 }); // warm-up
  const results = new Map([...targets.keys()].map((k) => [k, []]));
  const names = [...targets.keys()];
  for (let r = 0; r < ROUNDS; r++) {
    if (PARALLEL) {
      const xs = await Promise.all(builds.map((b) => h2load(targets.get(b), { seconds: ROUND_SECONDS })));
      builds.forEach((b, i) => results.get(b).push(xs[i]));
      results.get("echo").push(await h2load(targets.get("echo"), { calls: CALLS }));
    } else {
      for (const name of r % 2 === 0 ? names : [...names].reverse())
        results.get(name).push(await h2load(targets.get(name), { calls: CALLS }));
    }
    const line = names.map((n) => `${n} ${Math.round(results.get(n)[r].rps)}/s ${results.get(n)[r].us.toFixed(1)} µs`).join(" | ");
    process.stdout.write(`round ${r + 1}, load ${os.loadavg()[0].toFixed(1)}: ${line}\n`);
  }
  const first = results.get(builds[0]);
  const echoes = results.get("echo");
  for (const b of builds) {
    const xs = results.get(b);
    process.stdout.write(
      `${b}: CPU per call median ${median(xs.map((x) => x.us)).toFixed(1)} µs (echo ${median(echoes.map((x) => x.us)).toFixed(1)}), ` +
        `÷ ${builds[0]} per round median ${median(xs.map((x, i) => x.us / first[i].us)).toFixed(3)}, ` +
        `requests/s ÷ echo median ${median(xs.map((x, i) => x.rps / echoes[i].rps)).toFixed(2)}${PARALLEL ? " (echo alone, builds side by side)" : ""}\n`,
    );
  }
} finally {
  await cleanup();
}
