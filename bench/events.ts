/**
 * `npm run bench:events`: assignment events end to end (issue 13 acceptance).
 *
 * One server process (no sink of its own) stores new units through StreamAssign, in rounds that
 * alternate events off (the outbox trigger of INSERTs disabled) and events on, in the order
 * off/on, on/off, off/on, … (so a drift of the machine's load over the run weighs on both sides).
 * This process is the replica that holds the publisher lease: it runs the server's own
 * EventSequencer (its steps alternate with the server's under the advisory lock, as two replicas'
 * do) and EventPublisher with the JetStreamSink to NATS, with the publisher's `onPublished` hook
 * timing every acknowledged event. For each events-on round:
 * - the stored rate (units / StreamAssign's wall time);
 * - the rate at which the events reached JetStream (events / first to last ack), and the tail
 *   (last ack after the stream's end);
 * - the lag of each event from commit to JetStream ack: from the time the StreamAssign answer of
 *   its batch arrived here (the rows committed before it was sent), and from its `at` stamp (its
 *   transaction's start).
 * And events on / events off (stored rate), per pair of rounds and the median.
 *
 * Environment: DATABASE_URL, REDIS_URL, NATS_URL (defaults: local servers); BENCH_EVENTS_UNITS
 * (1,000,000 per round); BENCH_EVENTS_PAIRS (2: off+on twice); BENCH_SERVER_NODE_OPTIONS
 * (--max-old-space-size=192).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { DEFAULT_EVENT_SEQUENCE_MS } from "../src/server-defaults.js";
import { EventSequencer } from "../src/service/event-sequencer.js";
import { EventPublisher } from "../src/sinks/event-publisher.js";
import { JetStreamSink } from "../src/sinks/jetstream-sink.js";
import { EventLog } from "../src/store/event-log.js";
import { PgDatabase } from "../src/store/pg-database.js";
import { benchServer, log, redactUrl, runBench, Unreachable } from "./infra.js";
import { percentile } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const NATS_URL = env.NATS_URL || "nats://127.0.0.1:4222";
const UNITS = Number(env.BENCH_EVENTS_UNITS ?? 1_000_000);
const PAIRS = Number(env.BENCH_EVENTS_PAIRS ?? 2);
const BATCH = 10_000;
const SERVER_NODE_ARGS = (env.BENCH_SERVER_NODE_OPTIONS ?? "--max-old-space-size=192").split(" ").filter(Boolean);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(" / ");

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface OnRound {
  key: string;
  /** When each batch's answer arrived (ms, Date.now()). */
  answered: number[];
  acked: number;
  firstAck: number;
  lastAck: number;
  lagFromAnswer: number[];
  lagFromAt: number[];
}

async function main(cleanup: Cleanup): Promise<void> {
  const nc = await connect({ servers: NATS_URL, timeout: 5_000 }).catch((err: Error) => {
    throw new Unreachable(`cannot reach NATS at ${redactUrl(NATS_URL)}: ${err.message}\n        start nats-server -js, or set NATS_URL.`);
  });
  cleanup.add("close NATS", () => nc.close());
  const { db, server } = await benchServer(cleanup, {
    adminDatabaseUrl: ADMIN_DATABASE_URL,
    redisUrl: REDIS_URL,
    nodeArgs: SERVER_NODE_ARGS,
  });
  const stream = `BENCH_${db.name.toUpperCase()}`;
  cleanup.add(`delete stream ${stream}`, async () => void (await (await jetstreamManager(nc)).streams.delete(stream).catch(() => false)));

  const admin = createClient(ExperimentService, server.address);
  const assign = createClient(AssignmentService, server.address);
  cleanup.add("close clients", async () => {
    admin.close();
    assign.close();
  });
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());

  // This process: a replica holding the publisher lease (the server process has no sink).
  const database = new PgDatabase({ url: db.url, max: 4, applicationName: "bench-publisher" });
  cleanup.add("close publisher database", () => database.close());
  const events = new EventLog(database);
  const warn = (msg: string, err?: unknown) => log(`${msg}${err ? `: ${(err as Error).message}` : ""}`);
  const sequencer = new EventSequencer(events, { intervalMs: DEFAULT_EVENT_SEQUENCE_MS, log: warn });
  let current: OnRound | undefined;
  const newPublisher = () =>
    new EventPublisher(
      database,
      events,
      `jetstream:${stream}`,
      () => JetStreamSink.open({ url: NATS_URL, stream, subjectPrefix: `bench${db.name.slice(6)}` }),
      {
        waitForEvents: (ms, signal) => sequencer.waitForEvents(ms, signal),
        onPublished: (page, ackedAt) => {
          const r = current;
          if (!r) return;
          for (const e of page) {
            if (e.experimentKey !== r.key) continue;
            if (r.acked++ === 0) r.firstAck = ackedAt;
            r.lastAck = ackedAt;
            const i = Number(e.unitId.slice(e.unitId.lastIndexOf("-") + 1));
            r.lagFromAnswer.push(ackedAt - r.answered[Math.floor(i / BATCH)]!);
            r.lagFromAt.push(ackedAt - e.at.getTime());
          }
        },
        log: warn,
      },
    );
  let publisher = newPublisher();
  sequencer.start();
  publisher.start();
  cleanup.add("stop publisher", async () => {
    await publisher?.close();
    await sequencer.stop();
  });

  const variants = [
    { key: "control", weight: 5000 },
    { key: "treatment", weight: 5000 },
  ];
  const stored = async (key: string, answered: number[]) => {
    const t = performance.now();
    let n = 0;
    const requests = (async function* () {
      for (let i = 0; i < UNITS; i += BATCH) {
        const unitIds = Array.from({ length: Math.min(BATCH, UNITS - i) }, (_, k) => `${key}-${i + k}`);
        yield i === 0 ? { setup: { experimentKeys: [key] }, unitIds } : { unitIds };
      }
    })();
    for await (const r of assign.streamAssign(requests)) {
      answered.push(Date.now());
      const reasons = r.columns[0]!.reasons;
      for (let k = 0; k < reasons.length; k++)
        if (reasons[k] !== Reason.NEW) throw new Error(`${key} unit ${n + k}: ${Reason[reasons[k]!]}`);
      n += reasons.length;
    }
    if (n !== UNITS) throw new Error(`${key}: answered ${n} units, expected ${UNITS}`);
    return (performance.now() - t) / 1000;
  };

  const rows: string[] = [];
  const ratios: number[] = [];
  const serverCpu: Record<"on" | "off", number[]> = { on: [], off: [] };
  const onRounds: { round: OnRound; seconds: number; startedAt: number; endedAt: number; load: string }[] = [];
  for (let pair = 0; pair < PAIRS; pair++) {
    const order = pair % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const);
    const seconds: Record<string, number> = {};
    for (const mode of order) {
      const key = `ev-${mode}-${pair}`;
      await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
      await sql.query(`ALTER TABLE assignments ${mode === "on" ? "ENABLE" : "DISABLE"} TRIGGER assignment_events_inserted`);
      const round: OnRound = { key, answered: [], acked: 0, firstAck: 0, lastAck: 0, lagFromAnswer: [], lagFromAt: [] };
      if (mode === "on") current = round;
      const before = load();
      log(`round ${pair + 1} events ${mode}: StreamAssign ${UNITS} new units (load ${before}) …`);
      const startedAt = Date.now();
      const cpu0 = cpuSecondsOf(server.pid);
      seconds[mode] = await stored(key, round.answered);
      serverCpu[mode].push(((cpuSecondsOf(server.pid) - cpu0) / UNITS) * 1e6);
      const endedAt = Date.now();
      log(
        `round ${pair + 1} events ${mode}: ${seconds[mode]!.toFixed(2)} s, ${Math.round(UNITS / seconds[mode]!)} rows/s (load ${load()})`,
      );
      if (mode === "on") {
        for (const until = Date.now() + 600_000; round.acked < UNITS && Date.now() < until; ) await sleep(50);
        if (round.acked !== UNITS) throw new Error(`${key}: ${round.acked} events acknowledged by JetStream, expected ${UNITS}`);
        current = undefined;
        onRounds.push({ round, seconds: seconds[mode]!, startedAt, endedAt, load: before });
      } else {
        const { rows: n } = await sql.query<{ n: string }>(
          `SELECT count(*) AS n FROM assignment_events ev JOIN experiments e ON e.id = ev.experiment_id WHERE e.key = $1`,
          [key],
        );
        if (Number(n[0]!.n) !== 0) throw new Error(`${key}: events off, yet ${n[0]!.n} events`);
      }
    }
    ratios.push(seconds.off! / seconds.on!);
    rows.push(
      `| ${pair + 1} (${order.join(", ")}) | ${Math.round(UNITS / seconds.off!).toLocaleString("en-US")} | ${Math.round(UNITS / seconds.on!).toLocaleString("en-US")} | ${(seconds.off! / seconds.on!).toFixed(2)} |`,
    );
  }
  await sql.query(`ALTER TABLE assignments ENABLE TRIGGER assignment_events_inserted`);

  // The publisher alone: a round stored while no publisher runs, then drained by a new one (it
  // resumes after its stored progress). Its rate, and its CPU per event (this process runs
  // nothing else meanwhile), are less sensitive to the machine's load than the rounds above.
  await publisher.close();
  const drain: OnRound = { key: "ev-drain", answered: [], acked: 0, firstAck: 0, lastAck: 0, lagFromAnswer: [], lagFromAt: [] };
  await admin.createExperiment({ key: drain.key, variants, status: ExperimentStatus.RUNNING });
  log(`drain: StreamAssign ${UNITS} new units with no publisher running …`);
  await stored(drain.key, drain.answered);
  const outbox = async () => Number((await sql.query<{ n: string }>(`SELECT count(*) AS n FROM assignment_outbox`)).rows[0]!.n);
  for (const until = Date.now() + 600_000; (await outbox()) > 0 && Date.now() < until; ) await sleep(100);
  const drainLoad = load();
  current = drain;
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  publisher = newPublisher();
  publisher.start();
  for (const until = Date.now() + 600_000; drain.acked < UNITS && Date.now() < until; ) await sleep(20);
  const drainSeconds = (drain.lastAck - t0) / 1000;
  const drainCpu = process.cpuUsage(cpu0);
  const drainCpuUs = (drainCpu.user + drainCpu.system) / drain.acked;
  if (drain.acked !== UNITS) throw new Error(`drain: ${drain.acked} events acknowledged, expected ${UNITS}`);
  log(
    `drain: ${drainSeconds.toFixed(2)} s, ${Math.round(UNITS / drainSeconds)} events/s, ${drainCpuUs.toFixed(1)} µs CPU an event (load ${load()})`,
  );

  // JetStream's own count: every event once (the stream holds only this run's).
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  if (info.state.messages !== (PAIRS + 1) * UNITS)
    throw new Error(`the stream holds ${info.state.messages} messages, expected ${(PAIRS + 1) * UNITS}`);

  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const ms = (x: number) => `${x.toFixed(0)} ms`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const lines = [
    `Assignment events, ${f(UNITS)} units a round, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`,
    "",
    "| pair (order) | events off (rows/s) | events on (rows/s) | on / off |",
    "|---|---|---|---|",
    ...rows,
    `| median | | | ${median(ratios).toFixed(2)} (target ≥ 0.9) |`,
    "",
    "| events-on round | stored (rows/s) | to JetStream (events/s, first to last ack) | last ack after the stream's end | lag from answer p50 / p99 / max | lag from `at` p50 / p99 | load at start (1/5/15 min) |",
    "|---|---|---|---|---|---|---|",
    ...onRounds.map(({ round: r, seconds, endedAt, load: l }) => {
      const a = Float64Array.from(r.lagFromAnswer).sort();
      const b = Float64Array.from(r.lagFromAt).sort();
      const rate = r.acked / Math.max(0.001, (r.lastAck - r.firstAck) / 1000);
      return `| ${r.key} | ${f(UNITS / seconds)} | ${f(rate)} | ${ms(r.lastAck - endedAt)} | ${ms(percentile(a, 50))} / ${ms(percentile(a, 99))} / ${ms(a[a.length - 1]!)} | ${ms(percentile(b, 50))} / ${ms(percentile(b, 99))} | ${l} |`;
    }),
    "",
    `Server CPU per stored row (median of the rounds): events off ${median(serverCpu.off).toFixed(1)} µs, events on ${median(serverCpu.on).toFixed(1)} µs.`,
    `Publisher alone, draining ${f(UNITS)} stored events: ${f(UNITS / drainSeconds)} events/s, ${drainCpuUs.toFixed(1)} µs of its CPU an event (load at start ${drainLoad}).`,
    "",
    `Load average at the end: ${load()}.`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await runBench(main);
