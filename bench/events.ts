/**
 * `npm run bench:events`: assignment events end to end (issue 13 acceptance).
 *
 * One server process, started as a deployment runs it: with its JetStream sink (EVENTS_NATS_URL),
 * so its own EventSequencer and EventPublisher (it holds the publisher lease) move the events to
 * NATS. This process is only the StreamAssign client. It stores new units in rounds that alternate
 * events off (the outbox trigger of INSERTs disabled: no event, the publisher idle) and events on,
 * in the order off/on, on/off, off/on, … (a drift of the machine's load weighs on both sides). For
 * each round: the stored rate (units / StreamAssign's wall time) and the server process's CPU per
 * stored row (/proc), during StreamAssign and, for events on, until the round's last event was in
 * the stream (the publisher's tail included). For each events-on round, from the stream itself
 * (read back after the round with an ordered consumer): the rate at which the events reached
 * JetStream (events / first to last stored timestamp) and the lag of each event from commit to
 * JetStream (its stored timestamp, on this machine's clock, minus the time the StreamAssign answer
 * of its batch arrived here, the rows being committed before it is sent; and minus its `at` stamp,
 * its transaction's start).
 *
 * Last, the publisher alone, in this process: the events of the last BENCH_EVENTS_DRAIN positions
 * drained to a stream of their own by a new publisher, alternately the current one and the one
 * before commit e8d2c22 (bench/legacy-publisher.ts), in the order new, old, old, new: events/s and
 * this process's CPU per event (nothing else runs in it meanwhile).
 *
 * Environment: DATABASE_URL, REDIS_URL, NATS_URL (defaults: local servers); BENCH_EVENTS_UNITS
 * (1,000,000 per round); BENCH_EVENTS_PAIRS (2: off+on twice); BENCH_EVENTS_DRAIN (events per
 * drain, default the smaller of 200,000 and the units of a round); BENCH_EVENTS_DRAINS (4);
 * BENCH_EVENTS_PUBLISHER (server: the serving server has the sink; replica: a second server
 * process on the database has it, the serving one none); BENCH_SERVER_NODE_OPTIONS
 * (--max-old-space-size=192).
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { fromBinary } from "@bufbuild/protobuf";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { AssignmentEventSchema, AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import type { Cleanup } from "../harness/cleanup.js";
import { EventPublisher } from "../src/sinks/event-publisher.js";
import { JetStreamSink } from "../src/sinks/jetstream-sink.js";
import { EventLog } from "../src/store/event-log.js";
import { PgDatabase } from "../src/store/pg-database.js";
import { benchServer, log, redactUrl, runBench, startServerChild, Unreachable } from "./infra.js";
import { LegacyEventLog, LegacyJetStreamSink } from "./legacy-publisher.js";
import { percentile } from "./stats.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = env.REDIS_URL || "redis://127.0.0.1:6379";
const NATS_URL = env.NATS_URL || "nats://127.0.0.1:4222";
const UNITS = Number(env.BENCH_EVENTS_UNITS ?? 1_000_000);
const PAIRS = Number(env.BENCH_EVENTS_PAIRS ?? 2);
const DRAIN = Number(env.BENCH_EVENTS_DRAIN ?? Math.min(UNITS, 200_000));
const DRAINS = Number(env.BENCH_EVENTS_DRAINS ?? 4);
/** Where the publisher runs: "server" (the server serving StreamAssign has the sink) or "replica"
 * (a second server process on the same database has it; the serving one has none). */
const PUBLISHER = env.BENCH_EVENTS_PUBLISHER ?? "server";
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

async function main(cleanup: Cleanup): Promise<void> {
  const nc = await connect({ servers: NATS_URL, timeout: 5_000 }).catch((err: Error) => {
    throw new Unreachable(`cannot reach NATS at ${redactUrl(NATS_URL)}: ${err.message}\n        start nats-server -js, or set NATS_URL.`);
  });
  cleanup.add("close NATS", () => nc.close());
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let stream = "";
  let prefix = "";
  const { db, server } = await benchServer(cleanup, {
    adminDatabaseUrl: ADMIN_DATABASE_URL,
    redisUrl: REDIS_URL,
    nodeArgs: SERVER_NODE_ARGS,
    env: (d): Record<string, string> => {
      stream = `BENCH_${d.name.toUpperCase()}`;
      prefix = `bench${d.name.slice(6)}`;
      return PUBLISHER === "server" ? { EVENTS_NATS_URL: NATS_URL, EVENTS_NATS_STREAM: stream, EVENTS_NATS_SUBJECT_PREFIX: prefix } : {};
    },
  });
  // The replica: serves nothing here; runs the sequencer, as every server does, and the publisher.
  const replica =
    PUBLISHER === "replica"
      ? await startServerChild(
          "replica",
          {
            DATABASE_URL: db.url,
            REDIS_URL: REDIS_URL,
            REDIS_PREFIX: `bench:${db.name}:`,
            LOG_LEVEL: "warn",
            EVENTS_NATS_URL: NATS_URL,
            EVENTS_NATS_STREAM: stream,
            EVENTS_NATS_SUBJECT_PREFIX: prefix,
          },
          SERVER_NODE_ARGS,
        )
      : undefined;
  if (replica) cleanup.add("stop replica", replica.stop);
  if (PUBLISHER === "replica") for (let i = 0; i < 200 && !(await jsm.streams.info(stream).catch(() => undefined)); i++) await sleep(100);
  const streams = [stream];
  cleanup.add("delete streams", async () => {
    for (const s of streams) await jsm.streams.delete(s).catch(() => false);
  });

  const admin = createClient(ExperimentService, server.address);
  const assign = createClient(AssignmentService, server.address);
  cleanup.add("close clients", async () => {
    admin.close();
    assign.close();
  });
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());

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

  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const ms = (x: number) => `${(x / 1000).toFixed(2)} s`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const rows: string[] = [];
  const ratios: number[] = [];
  const cpu: Record<"on" | "off" | "onTail", number[]> = { on: [], off: [], onTail: [] };
  const replicaCpu: Record<"on" | "off", number[]> = { on: [], off: [] };
  const onRows: string[] = [];
  let inStream = 0;
  for (let pair = 0; pair < PAIRS; pair++) {
    const order = pair % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const);
    const seconds: Record<string, number> = {};
    const loads: string[] = [];
    for (const mode of order) {
      const key = `ev-${mode}-${pair}`;
      await admin.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
      await sql.query(`ALTER TABLE assignments ${mode === "on" ? "ENABLE" : "DISABLE"} TRIGGER assignment_events_inserted`);
      const answered: number[] = [];
      const before = load();
      loads.push(before.split(" / ")[0]!);
      log(`round ${pair + 1} events ${mode}: StreamAssign ${UNITS} new units (load ${before}) …`);
      const cpu0 = cpuSecondsOf(server.pid);
      const replica0 = replica ? cpuSecondsOf(replica.pid) : 0;
      seconds[mode] = await stored(key, answered);
      const endedAt = Date.now();
      cpu[mode].push(((cpuSecondsOf(server.pid) - cpu0) / UNITS) * 1e6);
      if (replica && mode === "off") replicaCpu.off.push(((cpuSecondsOf(replica.pid) - replica0) / UNITS) * 1e6);
      log(`round ${pair + 1} events ${mode}: ${seconds[mode]!.toFixed(2)} s, ${f(UNITS / seconds[mode]!)} rows/s (load ${load()})`);
      if (mode === "off") {
        const { rows: n } = await sql.query<{ n: string }>(
          `SELECT count(*) AS n FROM assignment_events ev JOIN experiments e ON e.id = ev.experiment_id WHERE e.key = $1`,
          [key],
        );
        if (Number(n[0]!.n) !== 0) throw new Error(`${key}: events off, yet ${n[0]!.n} events`);
        continue;
      }
      // Until the server's publisher has every event of the round in the stream.
      inStream += UNITS;
      for (const until = Date.now() + 900_000; Date.now() < until; await sleep(50))
        if ((await jsm.streams.info(stream)).state.messages >= inStream) break;
      const tailAt = Date.now();
      cpu.onTail.push(((cpuSecondsOf(server.pid) - cpu0) / UNITS) * 1e6);
      if (replica) replicaCpu.on.push(((cpuSecondsOf(replica.pid) - replica0) / UNITS) * 1e6);
      const info = await jsm.streams.info(stream);
      if (info.state.messages !== inStream) throw new Error(`the stream holds ${info.state.messages} messages, expected ${inStream}`);
      // The round's messages back from the stream: their stored time, and which batch they were.
      const consumer = await js.consumers.get(stream, {
        filter_subjects: `${prefix}.experiment.${key}`,
        deliver_policy: DeliverPolicy.All,
      });
      const messages = await consumer.consume({ max_messages: 5_000 });
      const fromAnswer = new Float64Array(UNITS);
      const fromAt = new Float64Array(UNITS);
      let first = Number.POSITIVE_INFINITY;
      let last = 0;
      let n = 0;
      for await (const m of messages) {
        const storedAt = Math.floor(Number(m.info.timestampNanos) / 1e6);
        const e = fromBinary(AssignmentEventSchema, m.data);
        const i = Number(e.unitId.slice(e.unitId.lastIndexOf("-") + 1));
        fromAnswer[n] = storedAt - answered[Math.floor(i / BATCH)]!;
        fromAt[n] = storedAt - (Number(e.time!.seconds) * 1000 + Math.floor(e.time!.nanos / 1e6));
        first = Math.min(first, storedAt);
        last = Math.max(last, storedAt);
        if (++n === UNITS) break;
      }
      await messages.close();
      fromAnswer.sort();
      fromAt.sort();
      // The sequencer's share: from the transaction's start to the event's numbering.
      const { rows: seq } = await sql.query<{ p50: number; p99: number }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) * 1000 AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY d) * 1000 AS p99
           FROM (SELECT extract(epoch FROM ev.sequenced_at - ev.at)::float8 AS d
                   FROM assignment_events ev JOIN experiments e ON e.id = ev.experiment_id WHERE e.key = $1) x`,
        [key],
      );
      onRows.push(
        `| ${key} | ${f(UNITS / seconds[mode]!)} | ${f(UNITS / Math.max(0.001, (last - first) / 1000))} | ${ms(tailAt - endedAt)} | ${ms(fromAnswer[0]!)} / ${ms(percentile(fromAnswer, 50))} / ${ms(percentile(fromAnswer, 99))} / ${ms(fromAnswer[UNITS - 1]!)} | ${ms(percentile(fromAt, 50))} / ${ms(percentile(fromAt, 99))} | ${ms(seq[0]!.p50)} / ${ms(seq[0]!.p99)} | ${before} |`,
      );
      log(onRows[onRows.length - 1]!);
    }
    ratios.push(seconds.off! / seconds.on!);
    rows.push(
      `| ${pair + 1} (${order.join(", ")}) | ${f(UNITS / seconds.off!)} | ${f(UNITS / seconds.on!)} | ${(seconds.off! / seconds.on!).toFixed(2)} | ${loads.join(", ")} |`,
    );
  }
  await sql.query(`ALTER TABLE assignments ENABLE TRIGGER assignment_events_inserted`);

  // The publisher alone, in this process: the last DRAIN events, drained again to a stream of
  // their own by a new publisher (its own sink name: its own lease and progress, set to start
  // DRAIN before the end), the current one and the old one alternating.
  const database = new PgDatabase({ url: db.url, max: 4, applicationName: "bench-publisher" });
  cleanup.add("close publisher database", () => database.close());
  const lastPosition = await new EventLog(database).lastPosition();
  if (lastPosition < BigInt(DRAIN)) throw new Error(`only ${lastPosition} events to drain, fewer than ${DRAIN}`);
  const drains: Record<"new" | "old", { rate: number; cpuUs: number; load: string }[]> = { new: [], old: [] };
  const warn = (msg: string, err?: unknown) => log(`${msg}${err ? `: ${(err as Error).message}` : ""}`);
  for (let k = 0; k < DRAINS; k++) {
    const which = k % 4 === 0 || k % 4 === 3 ? "new" : "old";
    const drainStream = `${stream}_D${k}`;
    const drainPrefix = `${prefix}d${k}`;
    streams.push(drainStream);
    const sinkName = `jetstream:${drainStream}`;
    await sql.query(`INSERT INTO assignment_event_sinks (name, position) VALUES ($1, $2)`, [
      sinkName,
      String(lastPosition - BigInt(DRAIN)),
    ]);
    let acked = 0;
    let lastAck = 0;
    const l = load();
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    const publisher = new EventPublisher(
      database,
      which === "new" ? new EventLog(database) : new LegacyEventLog(database),
      sinkName,
      () =>
        which === "new"
          ? JetStreamSink.open({ url: NATS_URL, stream: drainStream, subjectPrefix: drainPrefix })
          : LegacyJetStreamSink.open({ url: NATS_URL, stream: drainStream, subjectPrefix: drainPrefix }),
      {
        waitForEvents: (wait, signal) => new Promise((r) => (signal.aborted ? r() : setTimeout(r, wait))),
        onPublished: (page, at) => {
          acked += page.length;
          lastAck = at;
        },
        log: warn,
      },
    );
    publisher.start();
    for (const until = Date.now() + 900_000; acked < DRAIN && Date.now() < until; ) await sleep(20);
    const used = process.cpuUsage(cpu0);
    await publisher.close();
    if (acked !== DRAIN) throw new Error(`drain ${k}: ${acked} events acknowledged, expected ${DRAIN}`);
    const messages = (await jsm.streams.info(drainStream)).state.messages;
    if (messages !== DRAIN) throw new Error(`drain ${k}: the stream holds ${messages} messages, expected ${DRAIN}`);
    const d = { rate: DRAIN / ((lastAck - t0) / 1000), cpuUs: (used.user + used.system) / DRAIN, load: l };
    drains[which].push(d);
    log(`drain ${k + 1} (${which}): ${f(d.rate)} events/s, ${d.cpuUs.toFixed(1)} µs CPU an event (load ${l})`);
    await jsm.streams.delete(drainStream).catch(() => false);
  }

  const lines = [
    `Assignment events, ${f(UNITS)} units a round, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString()}`,
    "",
    "| pair (order) | events off (rows/s) | events on (rows/s) | on / off | load (1 min) at each round |",
    "|---|---|---|---|---|",
    ...rows,
    `| median | | | ${median(ratios).toFixed(2)} (target ≥ 0.9) | |`,
    "",
    `Publisher in: ${PUBLISHER === "server" ? "the server serving StreamAssign" : "a replica (a second server process, serving nothing)"}.`,
    replica
      ? `Replica CPU per stored row (median of the rounds): events off ${median(replicaCpu.off).toFixed(1)} µs, events on ${median(replicaCpu.on).toFixed(1)} µs until the last event was in the stream.`
      : "",
    `Server CPU per stored row (median of the rounds): events off ${median(cpu.off).toFixed(1)} µs; events on ${median(cpu.on).toFixed(1)} µs during StreamAssign, ${median(cpu.onTail).toFixed(1)} µs until its last event was in the stream (on/off rounds: ${cpu.off.map((x) => x.toFixed(1)).join(", ")} / ${cpu.on.map((x) => x.toFixed(1)).join(", ")} / ${cpu.onTail.map((x) => x.toFixed(1)).join(", ")}).`,
    "",
    "| events-on round | stored (rows/s) | to JetStream (events/s, first to last stored) | last event in the stream after the stream's end | lag commit→JetStream min / p50 / p99 / max (from the answer) | from `at` p50 / p99 | of which `at`→numbered (sequencer) p50 / p99 | load at start (1/5/15 min) |",
    "|---|---|---|---|---|---|---|---|",
    ...onRows,
    "",
    `Publisher alone, draining ${f(DRAIN)} stored events (in the order new, old, old, new):`,
    ...(["new", "old"] as const).map(
      (w) => `- ${w}: ${drains[w].map((d) => `${f(d.rate)} events/s, ${d.cpuUs.toFixed(1)} µs CPU an event (load ${d.load})`).join("; ")}`,
    ),
    drains.new.length && drains.old.length
      ? `- CPU an event old / new (medians): ${(median(drains.old.map((d) => d.cpuUs)) / median(drains.new.map((d) => d.cpuUs))).toFixed(1)}×`
      : "",
    "",
    `Load average at the end: ${load()}.`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await runBench(main);
