/**
 * `npm run bench:stalled` (also the last part of `npm run bench`): page loads beside stalled
 * streams. 4 clients, each on its own connection, load pages (AssignUnit of a new unit against the
 * 3 experiments tagged "page": every answer NEW and stored) for BENCH_STALLED_SECONDS (20), first
 * alone, then beside 50 ExportAssignments calls of a 200,000-row experiment that each read one
 * message and stop reading (each on its own connection, in a process of their own:
 * harness/stalled-exporter.ts), once they stalled (their clients' buffers stopped growing). Reports the
 * latency of both runs, and of a third one alone again afterwards (the machine drifts), and the
 * ratio of the p99 beside the stalled exports to each run alone (target ≤ 3). Every answer is checked against SPEC.md's hash; a failed page
 * load fails the run. The server runs in its own process, with the default pools.
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local servers); BENCH_STALLED_SECONDS (20);
 * BENCH_STALLED_EXPORTS (50); BENCH_SERVER_NODE_OPTIONS (node flags of the
 * server, default --max-old-space-size=192, as bench/streaming.ts).
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, ImportPolicy, Reason } from "assignment-client";
import { hashV1 } from "../src/engine/hash.js";
import type { Cleanup } from "../harness/cleanup.js";
import { startStalledExports } from "../harness/stalled-exports.js";
import { benchServer, log, runBench } from "./infra.js";
import { ms, summarize, type Summary } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const SECONDS = Number(env.BENCH_STALLED_SECONDS ?? 20);
const STALLED_EXPORTS = Number(env.BENCH_STALLED_EXPORTS ?? 50);
/** As in production (README: give Node a heap limit) and in bench/streaming.ts. */
const SERVER_NODE_ARGS = (env.BENCH_SERVER_NODE_OPTIONS ?? "--max-old-space-size=192").split(" ").filter(Boolean);
const PAGE_CLIENTS = 4;
const BIG_ROWS = 200_000;

const PAGE_EXPERIMENTS: Record<string, { key: string; weight: number }[]> = {
  "page-header": [
    { key: "old", weight: 5000 },
    { key: "new", weight: 5000 },
  ],
  "page-price": [
    { key: "p9", weight: 3000 },
    { key: "p10", weight: 3000 },
    { key: "p11", weight: 4000 },
  ],
  "page-layout": [
    { key: "grid", weight: 2500 },
    { key: "list", weight: 7500 },
  ],
};

const ownConnection = { "grpc.use_local_subchannel_pool": 1 };

/** SPEC.md: the first variant whose cumulative weight exceeds H(unit_id + ":" + salt) mod 10000. */
function specVariant(unitId: string, salt: string): string | undefined {
  const bucket = hashV1(`${unitId}:${salt}`) % 10_000;
  let cumulative = 0;
  return PAGE_EXPERIMENTS[salt]?.find((v) => bucket < (cumulative += v.weight))?.key;
}

/** 4 clients load pages of new units for SECONDS; every answer is checked. */
async function pageLoads(address: string, label: string, seconds: number): Promise<Summary> {
  const clients = Array.from({ length: PAGE_CLIENTS }, () =>
    createClient(AssignmentService, address, { timeoutMs: 30_000, retry: false, channelOptions: ownConnection }),
  );
  const samples: number[] = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  try {
    await Promise.all(
      clients.map(async (client, w) => {
        for (let i = 0; performance.now() < deadline; i++) {
          const unit = `${label}-${w}-${i}`;
          const t = performance.now();
          const { assignments } = await client.assignUnit({ units: { user_id: unit }, tag: "page" });
          samples.push(performance.now() - t);
          if (assignments.length !== 3) throw new Error(`${unit}: ${assignments.length} answers, expected 3`);
          for (const a of assignments) {
            const want = specVariant(unit, a.experimentKey);
            if (a.variantKey !== want || a.reason !== Reason.NEW || !a.stored) {
              throw new Error(`${unit} ${a.experimentKey}: ${a.variantKey} ${Reason[a.reason]}, expected ${want} NEW stored`);
            }
          }
        }
      }),
    );
  } finally {
    for (const c of clients) c.close();
  }
  return summarize(samples, performance.now() - started);
}

async function main(cleanup: Cleanup): Promise<void> {
  const { server } = await benchServer(cleanup, { adminDatabaseUrl: ADMIN_DATABASE_URL, redisUrl: REDIS_URL, nodeArgs: SERVER_NODE_ARGS });
  const admin = createClient(ExperimentService, server.address, { timeoutMs: 60_000 });
  cleanup.add("close client", async () => admin.close());

  for (const [key, variants] of Object.entries(PAGE_EXPERIMENTS)) {
    await admin.createExperiment({ key, variants, tags: ["page"], status: ExperimentStatus.RUNNING });
  }
  await admin.createExperiment({
    key: "big",
    variants: [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ],
    status: ExperimentStatus.RUNNING,
  });
  await admin.importAssignments(
    (async function* () {
      for (let i = 0; i < BIG_ROWS; i += 20_000) {
        const rows = Array.from({ length: 20_000 }, (_, k) => ({
          experimentKey: "big",
          unitId: `big-unit-${String(i + k).padStart(9, "0")}`,
          variantKey: (i + k) % 2 ? "a" : "b",
        }));
        yield i === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows } : { rows };
      }
    })(),
  );

  log("warming up …");
  await pageLoads(server.address, "warm", 5);
  log(`page loads alone, ${SECONDS} s …`);
  const alone = await pageLoads(server.address, "alone", SECONDS);
  const rssAlone = server.residentBytes() / 2 ** 20;
  log(`${STALLED_EXPORTS} stalled exports …`);
  const exports = await startStalledExports(server.address, STALLED_EXPORTS, "big", 2_000);
  cleanup.add("stop the stalled exports", exports.stop);
  if (exports.started !== STALLED_EXPORTS) {
    throw new Error(`only ${exports.started} of ${STALLED_EXPORTS} exports started: ${exports.failed.join("; ")}`);
  }
  log(`they stalled, with ${exports.buffered} messages read ahead by their clients`);
  log(`page loads beside them, ${SECONDS} s …`);
  const beside = await pageLoads(server.address, "beside", SECONDS);
  const rssBeside = server.residentBytes() / 2 ** 20;
  await exports.stop();
  // Alone again: the machine's own drift over the run, seen from both sides of the stalled run.
  log(`page loads alone again, ${SECONDS} s …`);
  const after = await pageLoads(server.address, "after", SECONDS);

  const row = (what: string, s: Summary) =>
    `| ${what} | ${s.n.toLocaleString("en-US")} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.max)} | ${Math.round(s.callsPerSecond)} |`;
  const lines = [
    `Page loads beside stalled streams, ${SECONDS} s each, ${PAGE_CLIENTS} clients, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`,
    "",
    "| run | page loads | p50 | p99 | max | per second |",
    "|---|---|---|---|---|---|",
    row("alone", alone),
    row(`beside ${STALLED_EXPORTS} stalled exports`, beside),
    row("alone again", after),
    "",
    `p99 beside the stalled exports / p99 alone: ${(beside.p99 / alone.p99).toFixed(2)} (before), ${(beside.p99 / after.p99).toFixed(2)} (after); target ≤ 3. No page load failed.`,
    `Server resident memory after the run alone ${rssAlone.toFixed(0)} MB, after the run beside the stalled exports ${rssBeside.toFixed(0)} MB.`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

await runBench(main);
