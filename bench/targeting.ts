/**
 * `npm run bench:targeting` (also the last part of `npm run bench`): what targeting conditions
 * (SPEC.md rule 8) cost, each measured against the same call without conditions in the same run,
 * on one server in its own process, through the real gRPC client:
 *
 * - AssignUnit, 1 unit × 10 experiments, warm (every unit stored and cached): 10 experiments each
 *   with a condition of 5 comparisons against 10 without, the same attributes sent to both.
 *   Phases alternate (plain, targeted, plain, …) so that the machine's noise falls on both.
 * - StreamAssign of BENCH_TARGETING_UNITS (1,000,000) new units, stored, each message carrying
 *   per-unit attributes (5 per unit), into one targeted experiment against one without a
 *   condition. Every unit's attributes make the condition true, so both store every unit (NEW) and
 *   the targeted stream evaluates the condition once per unit.
 * - In this process, without I/O: rule 8 alone, decide() for new units (rules 3 to 11, the
 *   condition tested every time) of an experiment with the condition against one without, the
 *   same attributes given to both; alternating rounds. Less exposed to a busy machine's noise
 *   than the calls above, it says what one evaluation of the condition costs.
 *
 * Environment: DATABASE_URL, REDIS_URL (defaults: local servers); BENCH_TARGETING_UNITS
 * (1,000,000); BENCH_TARGETING_CALLS (1,000 measured calls per AssignUnit phase); BENCH_TARGETING_ROUNDS
 * (5 rounds of the two AssignUnit phases).
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import type { JsonObject } from "@bufbuild/protobuf";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { checkAttributes } from "../src/engine/attributes.js";
import { compileCondition } from "../src/engine/condition.js";
import { decide } from "../src/engine/evaluate.js";
import { buildExperimentConfig } from "../src/engine/experiment-config.js";
import { benchServer, log, runBench } from "./infra.js";
import { ms, summarize, type Summary } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const UNITS = Number(env.BENCH_TARGETING_UNITS ?? 1_000_000);
const CALLS = Number(env.BENCH_TARGETING_CALLS ?? 1_000);
const ROUNDS = Number(env.BENCH_TARGETING_ROUNDS ?? 5);
const BATCH = 10_000;
const POOL = 200;

/** Five comparisons, every one true for ATTRIBUTES. */
const CONDITION =
  'attributes.country == "US" && attributes.app_version >= 5.2 && attributes.tier in ["gold", "silver"] && attributes.age >= 18 && attributes.beta == false';
const ATTRIBUTES: JsonObject = { country: "US", app_version: 5.3, tier: "gold", age: 31, beta: false };

const variants = [
  { key: "control", weight: 5000 },
  { key: "treatment", weight: 5000 },
];

async function main(cleanup: Cleanup): Promise<void> {
  const { server } = await benchServer(cleanup, { adminDatabaseUrl: ADMIN_DATABASE_URL, redisUrl: REDIS_URL, nodeArgs: [] });
  const admin = createClient(ExperimentService, server.address);
  // No deadline: a stream of a million units takes as long as it takes.
  const assign = createClient(AssignmentService, server.address);
  cleanup.add("close clients", async () => {
    admin.close();
    assign.close();
  });
  const plainKeys = Array.from({ length: 10 }, (_, i) => `plain-${i}`);
  const targetedKeys = Array.from({ length: 10 }, (_, i) => `targeted-${i}`);
  for (const key of plainKeys) await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
  for (const key of targetedKeys) await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING, condition: CONDITION });
  await admin.createExperiment({ key: "stream-plain", variants, status: ExperimentStatus.RUNNING });
  await admin.createExperiment({ key: "stream-targeted", variants, status: ExperimentStatus.RUNNING, condition: CONDITION });

  // --- AssignUnit, warm
  const unitCall = async (keys: string[], unit: string, expect: Reason) => {
    const r = await assign.assignUnit({ units: { user_id: unit }, experimentKeys: keys, attributes: ATTRIBUTES });
    for (const a of r.assignments)
      if (a.reason !== expect) throw new Error(`${a.experimentKey} ${unit}: ${Reason[a.reason]}, expected ${Reason[expect]}`);
  };
  const pool = Array.from({ length: POOL }, (_, k) => `w-${k}`);
  for (const keys of [plainKeys, targetedKeys]) for (const u of pool) await unitCall(keys, u, Reason.NEW);
  const phase = async (keys: string[]): Promise<Summary> => {
    for (let k = 0; k < 200; k++) await unitCall(keys, pool[k % POOL]!, Reason.STICKY);
    const samples: number[] = [];
    const t0 = performance.now();
    for (let k = 0; k < CALLS; k++) {
      const s = performance.now();
      await unitCall(keys, pool[k % POOL]!, Reason.STICKY);
      samples.push(performance.now() - s);
    }
    return summarize(samples, performance.now() - t0);
  };
  const plain: Summary[] = [];
  const targeted: Summary[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    plain.push(await phase(plainKeys));
    targeted.push(await phase(targetedKeys));
    log(`AssignUnit round ${r + 1}: plain p50 ${ms(plain[r]!.p50)}, targeted p50 ${ms(targeted[r]!.p50)}`);
  }

  // --- StreamAssign, new units stored, per-unit attributes
  const stream = async (key: string, prefix: string): Promise<number> => {
    const requests = (async function* () {
      for (let i = 0; i < UNITS; i += BATCH) {
        const n = Math.min(BATCH, UNITS - i);
        const unitIds = Array.from({ length: n }, (_, k) => `${prefix}-${i + k}`);
        const unitAttributes = Array.from({ length: n }, () => ATTRIBUTES);
        yield i === 0 ? { setup: { experimentKeys: [key] }, unitIds, unitAttributes } : { unitIds, unitAttributes };
      }
    })();
    log(`StreamAssign ${UNITS} units into ${key} …`);
    const t0 = performance.now();
    let answered = 0;
    for await (const r of assign.streamAssign(requests)) {
      for (const reason of r.columns[0]!.reasons) if (reason !== Reason.NEW) throw new Error(`${key}: ${Reason[reason]}, expected NEW`);
      answered += r.columns[0]!.reasons.length;
    }
    if (answered !== UNITS) throw new Error(`${key}: ${answered} answers, expected ${UNITS}`);
    const seconds = (performance.now() - t0) / 1000;
    log(`${key}: ${seconds.toFixed(2)} s, ${Math.round(UNITS / seconds).toLocaleString("en-US")} units/s`);
    return seconds;
  };
  const plainStream = await stream("stream-plain", "p");
  const targetedStream = await stream("stream-targeted", "t");

  // --- decide() in this process: the condition's cost per evaluation
  const config = (condition: boolean) =>
    buildExperimentConfig({
      id: 1,
      key: "e",
      salt: "e",
      unitType: "user_id",
      hashVersion: 1,
      variants: variants.map((v, id) => ({ id, key: v.key, weight: v.weight, params: undefined })),
      rollout: 10_000,
      status: ExperimentStatus.RUNNING,
      defaultVariantKey: undefined,
      winnerKey: undefined,
      tags: [],
      namespace: undefined,
      condition: condition ? compileCondition("condition", CONDITION) : undefined,
      overrideCount: 0,
      cacheGeneration: 0,
      version: 1n,
    });
  const attrs = checkAttributes("attributes", ATTRIBUTES);
  const ids = Array.from({ length: 200_000 }, (_, i) => `d-${i}`);
  const decideRound = (condition: boolean): number => {
    const exp = config(condition);
    const t0 = performance.now();
    for (const id of ids) if (decide(exp, id, undefined, attrs).reason !== Reason.NEW) throw new Error("decide: expected NEW");
    return ((performance.now() - t0) * 1e6) / ids.length; // ns per unit
  };
  decideRound(false);
  decideRound(true);
  const decidePlain: number[] = [];
  const decideTargeted: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    decidePlain.push(decideRound(false));
    decideTargeted.push(decideRound(true));
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const plainP50 = median(plain.map((s) => s.p50));
  const targetedP50 = median(targeted.map((s) => s.p50));
  const plainMean = median(plain.map((s) => s.mean));
  const targetedMean = median(targeted.map((s) => s.mean));
  const rate = (s: number) => Math.round(UNITS / s).toLocaleString("en-US");
  const lines = [
    `Targeting, ${os.availableParallelism()} CPUs, node ${process.version}, ${new Date().toISOString()}`,
    "",
    `| scenario | without conditions | with conditions (5 comparisons) | ratio | target |`,
    "|---|---|---|---|---|",
    `| AssignUnit 1 unit × 10 experiments, warm, p50 (median of ${ROUNDS} alternating phases of ${CALLS} calls) | ${ms(plainP50)} | ${ms(targetedP50)} | ${(targetedP50 / plainP50).toFixed(2)}× | ≤ 1.3× |`,
    `| same, mean | ${ms(plainMean)} | ${ms(targetedMean)} | ${(targetedMean / plainMean).toFixed(2)}× | |`,
    `| StreamAssign ${UNITS.toLocaleString("en-US")} new units stored, per-unit attributes, units/s | ${rate(plainStream)} | ${rate(targetedStream)} | ${(plainStream / targetedStream).toFixed(2)} of untargeted | ≥ 0.8 |`,
    `| decide() of a new unit in this process, ns per unit (median of ${ROUNDS} alternating rounds of ${ids.length.toLocaleString("en-US")}) | ${median(decidePlain).toFixed(0)} ns | ${median(decideTargeted).toFixed(0)} ns | +${(median(decideTargeted) - median(decidePlain)).toFixed(0)} ns per evaluation | (information) |`,
    "",
    `AssignUnit phases, p50 in order: ${plain.map((p, i) => `plain ${ms(p.p50)}, targeted ${ms(targeted[i]!.p50)}`).join("; ")}.`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

await runBench(main);
