/**
 * `npm run bench:jobs`: durable jobs against their same-run baselines, with real server processes
 * on one PostgreSQL and one Redis: an api server (ROLE=api: gRPC, runs no jobs) and workers
 * (ROLE=worker: jobs, no gRPC port), each with JOB_WORKERS (default 2) chunks at once.
 * - an assign job's rate (units per second, from the job's creation to its end, as the server
 *   records them) next to StreamAssign of the same number of the same unit ids into a twin
 *   experiment (through the api server, one stream): target ≥ 0.8×. After one untimed stream and
 *   one untimed job (warm-up), BENCH_JOB_ROUNDS (3) rounds,
 *   each a stream and a job into fresh experiments, alternating which goes first; the ratio
 *   reported is the median of the rounds' ratios (each round's two sides ran one after the other,
 *   so a machine shared with other work skews a round's ratio less than it skews its rates);
 * - the same job with one worker process, then two, on one queue (reported: the machine's cores
 *   are shared by both);
 * - page-load latency (AssignUnit of new units, one call at a time, on the api server) idle, and
 *   while an assign job runs on the workers.
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local servers); BENCH_JOB_UNITS (200,000);
 * BENCH_JOB_ROUNDS (3); BENCH_PAGE_LOADS (2,000 idle calls); BENCH_LOG_LEVEL (warn; debug logs
 * each chunk's phases); JOB_WORKERS and JOB_CHUNK_UNITS reach the worker processes.
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  AssignmentService,
  CohortService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  JobKind,
  JobService,
  JobState,
  Reason,
  type Job,
} from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { createDatabase, flushPrefix } from "../harness/databases.js";
import type { ServerProcess } from "../harness/spawn-server.js";
import { log, probePostgres, probeRedis, runBench, startServerChild } from "./infra.js";
import { ms, type Summary, summarize } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const UNITS = Number(env.BENCH_JOB_UNITS ?? 200_000);
const PAGE_LOADS = Number(env.BENCH_PAGE_LOADS ?? 2_000);
const ROUNDS = Math.max(1, Number(env.BENCH_JOB_ROUNDS ?? 3));
const BATCH = 10_000;
const VARIANTS = [
  { key: "control", weight: 5000 },
  { key: "treatment", weight: 5000 },
];

const unitIds = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => `u-${from + k}`);

async function main(cleanup: Cleanup): Promise<void> {
  log(`${await probePostgres(ADMIN_DATABASE_URL)}; ${await probeRedis(REDIS_URL)}`);
  const db = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const prefix = `bench:${db.name}:`;
  cleanup.add(`remove Redis keys ${prefix}*`, async () => void (await flushPrefix(REDIS_URL, prefix)));
  const serverEnv = (role: string) => ({
    DATABASE_URL: db.url,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? "warn",
    ROLE: role,
  });
  const start = async (label: string, role: string): Promise<ServerProcess> => {
    const p = await startServerChild(label, serverEnv(role));
    cleanup.add(`stop ${label}`, p.stop);
    return p;
  };
  const api = await start("api", "api");
  const address = api.address;
  const admin = createClient(ExperimentService, address);
  const assign = createClient(AssignmentService, address);
  const cohorts = createClient(CohortService, address, { timeoutMs: 600_000 });
  const jobs = createClient(JobService, address);
  cleanup.add("close clients", async () => {
    for (const c of [admin, assign, cohorts, jobs]) c.close();
  });
  const keys = ["job-2", "job-3", "page", "warm-stream", "warm-job"];
  for (let r = 0; r < ROUNDS; r++) keys.push(`stream-${r}`, `job-1-${r}`);
  for (const key of keys) {
    await admin.createExperiment({ key, variants: VARIANTS, status: ExperimentStatus.RUNNING });
  }

  /** AssignUnit of new units on "page", one call at a time, until `n` calls or `until()`. */
  let pageUnit = 0;
  const pageLoads = async (n: number, until: () => boolean = () => false): Promise<Summary> => {
    const samples: number[] = [];
    const t0 = performance.now();
    while (samples.length < n && !until()) {
      const t = performance.now();
      const r = await assign.assignUnit({ units: { user_id: `page-${pageUnit++}` }, experimentKeys: ["page"] });
      samples.push(performance.now() - t);
      const reason = r.assignments[0]?.reason ?? Reason.UNSPECIFIED;
      if (reason !== Reason.NEW) throw new Error(`page load answered ${Reason[reason]}, expected NEW`);
    }
    return summarize(samples, performance.now() - t0);
  };

  // --- page loads, idle (after a warm-up)
  await pageLoads(200);
  log(`AssignUnit × ${PAGE_LOADS}, idle …`);
  const idle = await pageLoads(PAGE_LOADS);
  log(`idle: p50 ${ms(idle.p50)}, p99 ${ms(idle.p99)}`);

  /** StreamAssign of UNITS new units into `key` (stored); resolves with its seconds. */
  const runStream = async (key: string): Promise<number> => {
    const s0 = performance.now();
    let answered = 0;
    for await (const r of assign.streamAssign(
      (async function* () {
        for (let i = 0; i < UNITS; i += BATCH) {
          const ids = unitIds(i, Math.min(UNITS, i + BATCH));
          yield i === 0 ? { setup: { experimentKeys: [key] }, unitIds: ids } : { unitIds: ids };
        }
      })(),
    )) {
      for (const reason of r.columns[0]!.reasons) if (reason !== Reason.NEW) throw new Error(`StreamAssign answered ${Reason[reason]}`);
      answered += r.columns[0]!.reasons.length;
    }
    if (answered !== UNITS) throw new Error(`StreamAssign answered ${answered} units, expected ${UNITS}`);
    return (performance.now() - s0) / 1000;
  };

  // --- the same unit ids as a cohort
  log(`UploadCohort ${UNITS} ids …`);
  const u0 = performance.now();
  await cohorts.uploadCohort(
    (async function* () {
      for (let i = 0; i < UNITS; i += BATCH) {
        const ids = unitIds(i, Math.min(UNITS, i + BATCH));
        yield i === 0 ? { setup: { name: "bench-units" }, unitIds: ids } : { unitIds: ids };
      }
    })(),
  );
  const uploadSeconds = (performance.now() - u0) / 1000;

  /** Starts an assign job of the cohort into `key`; resolves when it is done, with its rate. */
  const runJob = async (key: string): Promise<{ seconds: number; job: Job }> => {
    const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "bench-units", experimentKeys: [key] } });
    let last: Job | undefined;
    for await (const m of jobs.watchJob({ id: job!.id }, { timeoutMs: 3_600_000 })) last = m.job;
    if (last?.state !== JobState.DONE || last.processedUnits !== BigInt(UNITS) || last.enrolled !== BigInt(UNITS)) {
      throw new Error(`job ${job!.id} ended ${JobState[last?.state ?? 0]}: ${last?.processedUnits} units, ${last?.error}`);
    }
    const seconds = (timestampDate(last.endTime!).getTime() - timestampDate(last.createTime!).getTime()) / 1000;
    return { seconds, job: last };
  };

  // --- the assign job, one worker process, against StreamAssign of the same ids: alternating
  // rounds (stream first in even rounds, the job first in odd ones), each into fresh experiments.
  await start("worker-1", "worker");
  // One untimed stream and one untimed job first: neither side's first large run (cold JIT, pools
  // still opening) is measured, which made round 1's stream the slowest of every run.
  log("warm-up: one untimed stream and one untimed job …");
  await runStream("warm-stream");
  await runJob("warm-job");
  const rounds: { stream: number; job: number; load: string }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    log(`round ${r + 1} of ${ROUNDS}: StreamAssign and an assign job (one worker process) of ${UNITS} new units …`);
    let stream = 0;
    let job = 0;
    if (r % 2 === 0) stream = await runStream(`stream-${r}`);
    job = (await runJob(`job-1-${r}`)).seconds;
    if (r % 2 === 1) stream = await runStream(`stream-${r}`);
    const load = os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(" ");
    rounds.push({ stream, job, load });
    log(
      `round ${r + 1}: StreamAssign ${stream.toFixed(2)} s, job ${job.toFixed(2)} s (${(stream / job).toFixed(2)}×), load average ${load}`,
    );
  }
  const median = (xs: number[]) => {
    const a = [...xs].sort((x, y) => x - y);
    return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
  };
  const ratio = median(rounds.map((x) => x.stream / x.job));
  const one = { seconds: median(rounds.map((x) => x.job)) };
  const streamSeconds = median(rounds.map((x) => x.stream));

  // --- the same, two worker processes on one queue
  await start("worker-2", "worker");
  log(`assign job of ${UNITS} units, two worker processes …`);
  const two = await runJob("job-2");
  log(`two workers: ${two.seconds.toFixed(2)} s`);

  // --- page loads while an assign job runs (two workers)
  log("AssignUnit while an assign job runs …");
  let jobDone = false;
  const busyJob = runJob("job-3").finally(() => (jobDone = true));
  await new Promise((r) => setTimeout(r, 300)); // its first chunks taken
  const busy = await pageLoads(Number.MAX_SAFE_INTEGER, () => jobDone);
  const loaded = await busyJob;
  log(`while a job runs: p50 ${ms(busy.p50)}, p99 ${ms(busy.p99)} (${busy.n} calls)`);

  const rate = (s: number) => Math.round(UNITS / s);
  const f = (x: number) => x.toLocaleString("en-US");
  const lines = [
    `Jobs, ${f(UNITS)} units, ${os.cpus().length} cores, load average at the end ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(" ")}, node ${process.version}, ${new Date().toISOString().slice(0, 16)} UTC`,
    "",
    "| scenario | rate (units/s) | baseline in the same run | ratio | target |",
    "|---|---|---|---|---|",
    `| assign job, one worker process (JOB_WORKERS=${env.JOB_WORKERS ?? "default"}), median of ${ROUNDS} rounds | ${f(rate(one.seconds))} | StreamAssign of the same ids ${f(rate(streamSeconds))} | ${ratio.toFixed(2)} (median of the rounds' ratios) | ≥ 0.8 |`,
    `| assign job, two worker processes on one queue | ${f(rate(two.seconds))} | one worker process ${f(rate(one.seconds))} | ${(one.seconds / two.seconds).toFixed(2)} | (report) |`,
    `| assign job, two workers, while page loads run | ${f(rate(loaded.seconds))} | | | (information) |`,
    `| UploadCohort (for reference) | ${f(rate(uploadSeconds))} | | | |`,
    "",
    "| round (alternating: stream first in odd rounds) | StreamAssign (units/s) | assign job, one worker (units/s) | ratio | load average after (1, 5, 15 min) |",
    "|---|---|---|---|---|",
    ...rounds.map((x, i) => `| ${i + 1} | ${f(rate(x.stream))} | ${f(rate(x.job))} | ${(x.stream / x.job).toFixed(2)} | ${x.load} |`),
    "",
    "| AssignUnit (new unit, one call at a time, api server) | calls | p50 | p99 |",
    "|---|---|---|---|",
    `| idle | ${f(idle.n)} | ${ms(idle.p50)} | ${ms(idle.p99)} |`,
    `| while an assign job runs on two workers | ${f(busy.n)} | ${ms(busy.p50)} | ${ms(busy.p99)} |`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

await runBench(main);
