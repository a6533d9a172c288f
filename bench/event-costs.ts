/**
 * `node dist/bench/event-costs.js`: where the CPU of one assignment event goes, part by part, on
 * a fresh database with no server (issue 13: the events must reach JetStream at the stored rate;
 * this says which part to make cheaper). In order, each alone:
 * - the outbox trigger: BENCH_COSTS_EVENTS rows inserted (10,000 a statement and transaction, as
 *   StreamAssign stores them) with the INSERT trigger off, then into another experiment with it on:
 *   the database backend's CPU per row, and the difference;
 * - the sequencer's move (EventLog.sequence: outbox → assignment_events + counts), one step
 *   per 10,000 rows written (as the server's steps see them at that rate), backend CPU per event;
 * - the publisher draining those events to a stream of its own (EventPublisher + JetStreamSink,
 *   in this process): this process's CPU, nats-server's (/proc of the process named nats-server)
 *   and the database backends' (the publisher's reads and progress) per event, and events/s.
 * Run it with `node --cpu-prof --cpu-prof-dir=<dir>` for a profile of this process (the drain
 * is most of its CPU).
 *
 * Environment: DATABASE_URL, NATS_URL; BENCH_COSTS_EVENTS (200,000).
 */
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import type { Cleanup } from "../harness/cleanup.js";
import { createDatabase } from "../harness/databases.js";
import { EventPublisher } from "../src/sinks/event-publisher.js";
import { JetStreamSink } from "../src/sinks/jetstream-sink.js";
import { EventLog } from "../src/store/event-log.js";
import { runMigrations } from "../src/store/migrations.js";
import { PgDatabase } from "../src/store/pg-database.js";
import { log, runBench } from "./infra.js";

const env = process.env;
const ADMIN_DATABASE_URL = env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const NATS_URL = env.NATS_URL || "nats://127.0.0.1:4222";
const EVENTS = Number(env.BENCH_COSTS_EVENTS ?? 200_000);
const STATEMENT = 10_000;

/** CPU seconds (user + system) a process used so far, from /proc; 0 once it is gone. */
function cpuSecondsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function natsServerPid(): number | undefined {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, "utf8").trim() === "nats-server") return Number(d);
    } catch {}
  }
  return undefined;
}

/** CPU of every backend of the database, accumulated over calls of `sample` (a backend that
 * appears counts from 0; one that ends keeps its last reading). */
class BackendsCpu {
  private readonly seen = new Map<number, number>();
  constructor(private readonly sql: pg.Client) {}
  async sample(): Promise<number> {
    const { rows } = await this.sql.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`);
    for (const { pid } of rows) {
      const s = cpuSecondsOf(pid);
      if (s > 0 || !this.seen.has(pid)) this.seen.set(pid, s);
    }
    let total = 0;
    for (const s of this.seen.values()) total += s;
    return total;
  }
}

async function main(cleanup: Cleanup): Promise<void> {
  const db = await createDatabase(ADMIN_DATABASE_URL, "bench_");
  cleanup.add(`drop database ${db.name}`, db.drop);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  cleanup.add("close SQL client", () => sql.end());
  await runMigrations(sql);
  const nc = await connect({ servers: NATS_URL });
  cleanup.add("close NATS", () => nc.close());
  const jsm = await jetstreamManager(nc);
  const natsPid = natsServerPid();
  if (natsPid === undefined) log("no process named nats-server here: its CPU is not measured");
  const backends = new BackendsCpu(sql);
  const us = (seconds: number) => `${((seconds / EVENTS) * 1e6).toFixed(1)} µs`;
  const lines: string[] = [`Event costs, ${EVENTS.toLocaleString("en-US")} events, load ${os.loadavg()[0]!.toFixed(1)} at the start`];

  const experiment = async (key: string) => {
    await sql.query(`INSERT INTO salts VALUES ($1, $2)`, [key, `experiment:${key}`]);
    const { rows } = await sql.query<{ id: number }>(
      `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status)
       VALUES ($1, $1, 'user_id', 1, '[{"id":0,"key":"control","weight":5000},{"id":1,"key":"treatment","weight":5000}]', 10000, 2)
       RETURNING id`,
      [key],
    );
    return rows[0]!.id;
  };
  const eventLog = new EventLog(new PgDatabase({ url: db.url, max: 2, applicationName: "bench-sequencer" }));
  let sequenced = 0;
  const insert = async (key: string, trigger: boolean) => {
    const id = await experiment(key);
    await sql.query(`ALTER TABLE assignments ${trigger ? "ENABLE" : "DISABLE"} TRIGGER assignment_events_inserted`);
    let insertCpu = 0;
    let sequenceCpu = 0;
    for (let i = 0; i < EVENTS; i += STATEMENT) {
      const c0 = await backends.sample();
      await sql.query(
        `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT $1, $2 || '-' || g, g % 2, 1, 1 FROM generate_series($3::int, $4::int) g`,
        [id, key, i, Math.min(i + STATEMENT, EVENTS) - 1],
      );
      const c1 = await backends.sample();
      insertCpu += c1 - c0;
      if (trigger) {
        sequenced += await eventLog.sequence();
        sequenceCpu += (await backends.sample()) - c1;
      }
    }
    return { insertCpu, sequenceCpu };
  };
  const off = await insert("costs-off", false);
  const on = await insert("costs-on", true);
  if (sequenced !== EVENTS) throw new Error(`sequenced ${sequenced} events, expected ${EVENTS}`);
  lines.push(
    `- insert, database CPU a row: trigger off ${us(off.insertCpu)}, on ${us(on.insertCpu)} (outbox: ${us(on.insertCpu - off.insertCpu)})`,
    `- sequencer move (one step per ${STATEMENT.toLocaleString("en-US")} rows), database CPU an event: ${us(on.sequenceCpu)}`,
  );
  log(lines.join("\n"));

  const stream = `BENCH_COSTS_${db.name.toUpperCase()}`;
  cleanup.add("delete stream", async () => void (await jsm.streams.delete(stream).catch(() => false)));
  const database = new PgDatabase({ url: db.url, max: 4, applicationName: "bench-publisher" });
  cleanup.add("close publisher database", () => database.close());
  let acked = 0;
  let lastAck = 0;
  const publisher = new EventPublisher(
    database,
    new EventLog(database),
    `jetstream:${stream}`,
    () => JetStreamSink.open({ url: NATS_URL, stream, subjectPrefix: `costs${db.name.slice(6)}` }),
    {
      waitForEvents: (wait, signal) => new Promise((r) => (signal.aborted ? r() : setTimeout(r, wait))),
      onPublished: (page, at) => {
        acked += page.length;
        lastAck = at;
      },
      log: (msg, err) => log(`${msg}${err ? `: ${(err as Error).message}` : ""}`),
    },
  );
  const db0 = await backends.sample();
  const nats0 = natsPid ? cpuSecondsOf(natsPid) : 0;
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  publisher.start();
  for (const until = Date.now() + 600_000; acked < EVENTS && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
  const used = process.cpuUsage(cpu0);
  const nats1 = natsPid ? cpuSecondsOf(natsPid) : 0;
  const db1 = await backends.sample();
  await publisher.close();
  if (acked !== EVENTS) throw new Error(`${acked} events acknowledged, expected ${EVENTS}`);
  const messages = (await jsm.streams.info(stream)).state.messages;
  if (messages !== EVENTS) throw new Error(`the stream holds ${messages} messages, expected ${EVENTS}`);
  lines.push(
    `- publisher drain: ${Math.round(EVENTS / ((lastAck - t0) / 1000)).toLocaleString("en-US")} events/s; CPU an event: publisher ${us((used.user + used.system) / 1e6)}, nats-server ${natsPid ? us(nats1 - nats0) : "?"}, database ${us(db1 - db0)}`,
    `Load at the end ${os.loadavg()[0]!.toFixed(1)}.`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

await runBench(main);
