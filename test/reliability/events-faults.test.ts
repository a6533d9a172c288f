/**
 * Assignment events under faults (issue acceptance): a consumer of WatchAssignments and the
 * JetStream stream while the server is SIGKILLed and restarted, NATS is killed and restarted, and
 * PostgreSQL is crashed (immediate stop) and restarted, with writes going on throughout. The
 * consumer stores the last position it processed and resumes after it each time. Afterwards its
 * events must equal, one for one, what the database holds (stored rows, overrides, erasures:
 * replayed from the events), positions 1..N each once; JetStream must hold positions 1..N once
 * each, in order.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AssignmentEvent,
  AssignmentEventKind,
  AssignmentEventSchema,
  AssignmentService,
  createClient,
  ExperimentService,
  ExperimentStatus,
} from "assignment-client";
import type { NatsServer } from "../../harness/nats-server.js";
import type { PostgresServer } from "../../harness/postgres-server.js";
import type { ServerProcess } from "../../harness/spawn-server.js";
import { Dedicated } from "../support/dedicated.js";
import { freshRedisPrefix, redisUrl, uniqueHex } from "../support/services.js";

const d = new Dedicated();
let pgs: PostgresServer;
let nats: NatsServer;
let server: ServerProcess;
const stream = `FAULTS_${uniqueHex()}`;
const prefix = freshRedisPrefix();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const spawn = () =>
  d.serverProcess("events", {
    DATABASE_URL: pgs.url,
    REDIS_URL: redisUrl(),
    REDIS_PREFIX: prefix,
    EVENT_SEQUENCE_MS: "20",
    EVENTS_NATS_URL: nats.url,
    EVENTS_NATS_STREAM: stream,
    EVENTS_LEASE_RETRY_MS: "200",
  });

beforeAll(async () => {
  pgs = await d.postgres();
  nats = await d.nats();
  server = await spawn();
});
afterAll(async () => {
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

describe("assignment events under faults", () => {
  it("a resuming consumer and JetStream get exactly what was stored, through server, NATS and PostgreSQL crashes", async () => {
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    const admin0 = createClient(ExperimentService, server.address, { timeoutMs: 20_000 });
    await admin0.createExperiment({ key: "faults", variants, status: ExperimentStatus.RUNNING });
    admin0.close();

    let running = true;
    // The writer: new units in batches, an override and an erasure now and then; failures (a
    // server or PostgreSQL away) are retried later, never counted.
    const writer = (async () => {
      for (let i = 0; running; i++) {
        const a = createClient(AssignmentService, server.address, { timeoutMs: 5_000, retry: false });
        const e = createClient(ExperimentService, server.address, { timeoutMs: 5_000, retry: false });
        try {
          await a.bulkAssign({ experimentKey: "faults", unitIds: Array.from({ length: 50 }, (_, k) => `w${i}-${k}`) });
          if (i % 5 === 0) await e.setOverrides({ experimentKey: "faults", overrides: [{ unitId: `w${i}-0`, variantKey: "b" }] });
          if (i % 7 === 0) await e.eraseUnits({ unitIds: [`w${i}-1`] });
        } catch {
          await sleep(100);
        } finally {
          a.close();
          e.close();
        }
        await sleep(20);
      }
    })();

    // The consumer: the last position it processed is its whole state.
    const consumed: AssignmentEvent[] = [];
    let stored = 0n;
    let reconnects = 0;
    let consuming = true;
    const consumer = (async () => {
      while (consuming) {
        const c = createClient(ExperimentService, server.address, { timeoutMs: 0, retry: false });
        const ac = new AbortController();
        const stop = setInterval(() => !consuming && ac.abort(), 50);
        try {
          for await (const m of c.watchAssignments(
            { start: { case: "afterPosition", value: stored }, maxBatch: 200 },
            { signal: ac.signal },
          )) {
            consumed.push(...m.events);
            if (m.events.length > 0) stored = m.position;
          }
        } catch {
          reconnects++;
          await sleep(200);
        } finally {
          clearInterval(stop);
          c.close();
        }
      }
    })();

    await sleep(2_000);
    // 1. The server is SIGKILLed and a new one started (another port).
    await server.kill();
    await sleep(500);
    server = await spawn();
    await sleep(2_000);
    // 2. NATS is killed and started again (its store kept).
    await nats.kill();
    await sleep(1_000);
    await nats.start();
    await sleep(2_000);
    // 3. PostgreSQL crashes (immediate stop: recovery at start) and comes back.
    await pgs.stop("immediate");
    await sleep(1_000);
    await pgs.start();
    await sleep(3_000);
    running = false;
    await writer;

    // The truth, from the database.
    const client = new pg.Client({ connectionString: pgs.url });
    await client.connect();
    const last = async () =>
      BigInt((await client.query<{ p: string }>(`SELECT last_position::text AS p FROM assignment_event_sequence`)).rows[0]!.p);
    const outbox = async () => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM assignment_outbox`)).rows[0]!.n);
    for (let i = 0; i < 300 && ((await outbox()) > 0 || stored < (await last())); i++) await sleep(100);
    consuming = false;
    await consumer;
    const total = await last();
    const stateOf = async (sql: string) =>
      new Map((await client.query<{ u: string; v: number }>(sql)).rows.map((r) => [r.u, r.v === 0 ? "a" : "b"]));
    const dbStored = await stateOf(`SELECT unit_id AS u, variant AS v FROM assignments`);
    const dbOverrides = await stateOf(`SELECT unit_id AS u, variant AS v FROM overrides`);
    const missing = [...dbStored.keys()].filter((u) => !consumed.some((e) => e.unitId === u)).slice(0, 5);
    const diag = {
      total: String(total),
      consumed: consumed.length,
      dbRows: dbStored.size,
      missing,
      missingEvents: (await client.query(`SELECT position, kind, unit_id FROM assignment_events WHERE unit_id = ANY($1)`, [missing])).rows,
      missingRows: (await client.query(`SELECT unit_id, assigned_at FROM assignments WHERE unit_id = ANY($1)`, [missing])).rows,
      outbox: await outbox(),
      log: server.output().slice(-2500),
      events: (await client.query(`SELECT count(*) FROM assignment_events`)).rows,
    };
    await client.end();

    expect(reconnects).toBeGreaterThan(0);
    expect(total).toBeGreaterThan(500n);
    expect(consumed.map((e) => e.position)).toEqual(Array.from({ length: Number(total) }, (_, i) => BigInt(i + 1)));
    const s = new Map<string, string>();
    const o = new Map<string, string>();
    for (const e of consumed) {
      if (e.kind === AssignmentEventKind.ERASED) {
        s.delete(e.unitId);
        o.delete(e.unitId);
      } else if (e.kind === AssignmentEventKind.OVERRIDE_SET) o.set(e.unitId, e.variantKey);
      else if (e.kind === AssignmentEventKind.OVERRIDE_CLEARED) o.delete(e.unitId);
      else s.set(e.unitId, e.variantKey);
    }
    expect(s, JSON.stringify(diag)).toEqual(dbStored);
    expect(o).toEqual(dbOverrides);

    // JetStream: every position once, in order (republished ones dropped by their message id).
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      let info = await jsm.streams.info(stream);
      for (let i = 0; i < 300 && info.state.messages < Number(total); i++) {
        await sleep(100);
        info = await jsm.streams.info(stream);
      }
      const positions: bigint[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        if (m) positions.push(fromBinary(AssignmentEventSchema, m.data).position);
      }
      expect(positions).toEqual(Array.from({ length: Number(total) }, (_, i) => BigInt(i + 1)));
    } finally {
      await nc.close();
    }
  }, 240_000);
});
