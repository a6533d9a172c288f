/**
 * The JetStream sink against a real nats-server and PostgreSQL: two servers on one database, one
 * publisher (the lease holder), every event in the stream exactly once and in position order,
 * one subject per experiment; the lease moves when its holder goes away.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentEventSchema, AssignmentService, createClient, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { EventLog } from "../../src/store/event-log.js";
import { freshDatabase, natsUrl, uniqueHex } from "../support/services.js";

const stream = `EV_${uniqueHex()}`;
const prefix = `ev${uniqueHex()}`;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let nc: NatsConnection;
let jsm: JetStreamManager;
const servers: RunningServer[] = [];

const start = () =>
  startServer({
    databaseUrl: db.url,
    port: 0,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    events: { sequenceMs: 10, natsUrl: natsUrl(), natsStream: stream, natsSubjectPrefix: prefix, publisherLeaseRetryMs: 100 },
  });

beforeAll(async () => {
  db = await freshDatabase();
  servers.push(await start(), await start());
  nc = await connect({ servers: natsUrl() });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await jsm?.streams.delete(stream).catch(() => {});
  await nc?.close();
  await db?.drop();
});

/** Every message of the stream, in stream order, decoded. */
async function streamed() {
  const info = await jsm.streams.info(stream);
  const out: { subject: string; msgId: string | undefined; position: bigint; kind: number; experimentKey: string; unitId: string }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (!m) continue;
    const e = fromBinary(AssignmentEventSchema, m.data);
    out.push({
      subject: m.subject,
      msgId: m.header?.get("Nats-Msg-Id"),
      position: e.position,
      kind: e.kind,
      experimentKey: e.experimentKey,
      unitId: e.unitId,
    });
  }
  return out;
}

async function waitFor<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const until = Date.now() + ms;
  let v = await what();
  while (!ok(v) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    v = await what();
  }
  return v;
}

describe("JetStream sink", () => {
  it("two servers writing at once: one publisher, every event once in position order, one subject per experiment; the lease moves", async () => {
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    const clients = servers.map((s) => ({
      a: createClient(AssignmentService, s.address, { timeoutMs: 30_000 }),
      e: createClient(ExperimentService, s.address, { timeoutMs: 30_000 }),
    }));
    await clients[0]!.e.createExperiment({ key: "js-1", variants, status: ExperimentStatus.RUNNING });
    await clients[0]!.e.createExperiment({ key: "js-2", variants, status: ExperimentStatus.RUNNING });
    // The other server learns of new experiments within its bounded staleness (SPEC.md): until it
    // does it answers UNKNOWN_EXPERIMENT and stores nothing, and the count below would be short.
    for (const c of clients) {
      for (const experimentKey of ["js-1", "js-2"]) {
        const known = await waitFor(
          async () => (await c.a.assign({ experimentKey, unitId: "probe", options: { dryRun: true } })).assignment!.reason,
          (r) => r !== Reason.UNKNOWN_EXPERIMENT,
        );
        expect(known, experimentKey).not.toBe(Reason.UNKNOWN_EXPERIMENT);
      }
    }
    // Both servers store at once, overlapping units (only the first insert of a cell is an event).
    await Promise.all(
      clients.flatMap((c, i) =>
        [0, 1, 2, 3].map((round) =>
          c.a.bulkAssign({
            experimentKey: round % 2 ? "js-1" : "js-2",
            unitIds: Array.from({ length: 200 }, (_, k) => `u${round}-${k + i * 50}`),
          }),
        ),
      ),
    );
    const leaders = await waitFor(
      async () => servers.map((s) => s.publisher?.leader === true),
      (l) => l.filter(Boolean).length === 1,
    );
    expect(leaders.filter(Boolean)).toHaveLength(1);
    const log = new EventLog(servers[0]!.database);
    // Every stored row is numbered within a few sequencer steps.
    const stored = 8 * 200 - 4 * 150; // two servers' rounds overlap by 150 units a round
    const last = await waitFor(
      () => log.lastPosition(),
      (p) => p >= BigInt(stored),
    );
    expect(last).toBe(BigInt(stored));
    let got = await waitFor(streamed, (m) => m.length > 0 && m[m.length - 1]!.position >= last && m.length >= Number(last));
    expect(got.map((m) => Number(m.position))).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(got.every((m) => m.msgId === String(m.position))).toBe(true);
    expect(got.every((m) => m.subject === `${prefix}.experiment.${m.experimentKey}`)).toBe(true);

    // The holder goes away: the other server takes the lease and goes on where it stopped.
    const holder = leaders.indexOf(true);
    const other = 1 - holder;
    const tookOverFrom = Date.now();
    await servers[holder]!.close();
    for (const c of clients) {
      c.a.close();
      c.e.close();
    }
    await waitFor(
      async () => servers[other]!.publisher?.leader === true,
      (v) => v,
    );
    const takeoverMs = Date.now() - tookOverFrom;
    const survivor = createClient(AssignmentService, servers[other]!.address, { timeoutMs: 30_000 });
    const admin = createClient(ExperimentService, servers[other]!.address, { timeoutMs: 30_000 });
    await survivor.bulkAssign({ experimentKey: "js-1", unitIds: ["after-1", "after-2"] });
    await admin.eraseUnits({ unitIds: ["after-1"] });
    survivor.close();
    admin.close();
    const otherLog = new EventLog(servers[other]!.database);
    const total = await waitFor(
      () => otherLog.lastPosition(),
      (p) => p >= last + 3n,
    );
    got = await waitFor(streamed, (m) => m.length >= Number(total));
    expect(got.map((m) => Number(m.position))).toEqual(Array.from({ length: Number(total) }, (_, i) => i + 1));
    const erased = got[got.length - 1]!;
    expect(
      [erased.subject, erased.unitId],
      JSON.stringify(got.slice(-4), (_, v) => (typeof v === "bigint" ? String(v) : v)),
    ).toEqual([`${prefix}.erased.user_id`, "after-1"]);
    // The bound stated in README: the lease retry interval (100 ms here) after the holder's
    // connection closed; generous here for a loaded machine.
    expect(takeoverMs).toBeLessThan(15_000);
  }, 180_000);
});
