/**
 * The JetStream sink's acknowledgements (src/sinks/jetstream-sink.ts), against a nats-server of its
 * own: a batch is taken only once the stream holds every message of it. New events go out as a
 * chain (each expects the stream's last sequence to be the one before it) checked against the
 * stream at the batch's end; a republish (positions the stream may hold) goes out with a PubAck
 * per message. A full stream (discard new: the chain is refused from there), a stream that is gone,
 * and a server that stopped (SIGSTOP) each fail the batch; publishing it again, as the publisher
 * does, ends with every position in the stream exactly once and in order (JetStream drops, by
 * message id, the messages of the failed attempt it had stored, and the sink skips them).
 */
import { fromBinary } from "@bufbuild/protobuf";
import { DiscardPolicy, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentEventSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { NatsServer } from "../../harness/nats-server.js";
import { JetStreamSink } from "../../src/sinks/jetstream-sink.js";
import type { StoredEvent } from "../../src/store/event-log.js";
import { Dedicated } from "../support/dedicated.js";

const d = new Dedicated();
let nats: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await d.nats({ name: "acks" });
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

const events = (from: number, n: number): StoredEvent[] =>
  Array.from({ length: n }, (_, i) => ({
    position: BigInt(from + i),
    kind: 1,
    experimentId: 1,
    experimentKey: i % 3 === 0 ? "exp-a" : "exp-b",
    unitType: "user_id",
    unitId: `u${from + i}`,
    variantKey: "control",
    source: 1,
    version: 1n,
    at: new Date(),
  }));

/** The stream's messages in stream order: [position, message id]. */
async function streamed(stream: string): Promise<[number, string | undefined][]> {
  const info = await jsm.streams.info(stream);
  const out: [number, string | undefined][] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m) out.push([Number(fromBinary(AssignmentEventSchema, m.data).position), m.header?.get("Nats-Msg-Id")]);
  }
  return out;
}

const oneEach = (n: number) => Array.from({ length: n }, (_, i) => [i + 1, String(i + 1)]);

describe("JetStream sink acknowledgements", () => {
  it("a refused chain fails the batch; published again, each position is stored once, in order", async () => {
    const stream = "ACKS_FULL";
    await jsm.streams.add({ name: stream, subjects: ["full.>"], max_msgs: 30, discard: DiscardPolicy.New });
    const sink = await JetStreamSink.open({ url: nats.url, stream, subjectPrefix: "full", ackTimeoutMs: 2_000 });
    try {
      const batch = events(1, 100);
      await expect(sink.publish(batch)).rejects.toThrow(/JetStream stored 30 of 100 messages/);
      expect((await jsm.streams.info(stream)).state.messages).toBe(30);
      await jsm.streams.update(stream, { max_msgs: -1 });
      await sink.publish(batch);
      // Once more, every message a duplicate: taken, nothing added.
      await sink.publish(batch);
      expect(await streamed(stream)).toEqual(oneEach(100));
    } finally {
      await sink.close();
    }
  }, 60_000);

  it("a republish is acknowledged message by message: an error PubAck fails it, and a hole is filled rather than skipped", async () => {
    const stream = "ACKS_HOLE";
    await jsm.streams.add({ name: stream, subjects: ["hole.>"], max_msgs: 30, discard: DiscardPolicy.New });
    const sink = await JetStreamSink.open({ url: nats.url, stream, subjectPrefix: "hole", ackTimeoutMs: 2_000 });
    try {
      // A stream with a hole at position 11 (as a crashed publisher of before the chain could leave it).
      await sink.publish([...events(1, 10), ...events(12, 20)]);
      expect((await jsm.streams.info(stream)).state.messages).toBe(30);
      // Every position at or before the stream's last (31) goes out with a PubAck each; 11, the
      // one not held, is refused (the stream is full), which fails the batch.
      await expect(sink.publish(events(1, 31))).rejects.toThrow(/refused message 10 of the batch: 503 10077 maximum messages exceeded/);
      await jsm.streams.update(stream, { max_msgs: -1 });
      await sink.publish(events(1, 35));
      const held = await streamed(stream);
      expect(held.map(([p]) => p)).toEqual([
        ...Array.from({ length: 10 }, (_, i) => i + 1),
        ...Array.from({ length: 20 }, (_, i) => i + 12),
        11,
        32,
        33,
        34,
        35,
      ]);
      expect(held.every(([p, id]) => String(p) === id)).toBe(true);
    } finally {
      await sink.close();
    }
  }, 60_000);

  it("overlapping batches: the second chains after the first, and fails with it", async () => {
    const stream = "ACKS_OVERLAP";
    await jsm.streams.add({ name: stream, subjects: ["overlap.>"], max_msgs: 30, discard: DiscardPolicy.New });
    const sink = await JetStreamSink.open({ url: nats.url, stream, subjectPrefix: "overlap", ackTimeoutMs: 1_000 });
    try {
      await Promise.all([sink.publish(events(1, 10)), sink.publish(events(11, 10))]);
      const [first, second] = await Promise.allSettled([sink.publish(events(21, 20)), sink.publish(events(41, 10))]);
      expect(first.status === "rejected" && String(first.reason)).toMatch(/JetStream stored 10 of 20 messages/);
      expect(second.status).toBe("rejected");
      await jsm.streams.update(stream, { max_msgs: -1 });
      await Promise.all([sink.publish(events(21, 20)), sink.publish(events(41, 10))]);
      expect(await streamed(stream)).toEqual(oneEach(50));
    } finally {
      await sink.close();
    }
  }, 60_000);

  it("no stream on the subject fails the batch", async () => {
    const stream = "ACKS_GONE";
    const sink = await JetStreamSink.open({ url: nats.url, stream, subjectPrefix: "gone", ackTimeoutMs: 2_000 });
    try {
      await jsm.streams.delete(stream);
      await expect(sink.publish(events(1, 10))).rejects.toThrow(/stream not found/);
    } finally {
      await sink.close();
    }
  }, 60_000);

  it("a server that went quiet fails the batch after ackTimeoutMs; the republish is de-duplicated", async () => {
    const stream = "ACKS_LOST";
    const sink = await JetStreamSink.open({ url: nats.url, stream, subjectPrefix: "lost", ackTimeoutMs: 1_000 });
    try {
      await sink.publish(events(1, 50));
      const pid = nats.pid!;
      // The server stops reading: the next batch reaches its socket, no ack comes back.
      process.kill(pid, "SIGSTOP");
      let resumed = false;
      try {
        const started = Date.now();
        await expect(sink.publish(events(51, 200))).rejects.toThrow(/JetStream did not answer for the batch's end/);
        expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
        process.kill(pid, "SIGCONT");
        resumed = true;
      } finally {
        if (!resumed) process.kill(pid, "SIGCONT");
      }
      // The server goes on and stores the first attempt's messages (their acks now ignored);
      // the publisher's second attempt is dropped message by message.
      for (let i = 0; i < 100 && (await jsm.streams.info(stream)).state.messages < 250; i++) await new Promise((r) => setTimeout(r, 50));
      await sink.publish(events(51, 200));
      await sink.publish(events(251, 10));
      expect(await streamed(stream)).toEqual(oneEach(260));
    } finally {
      await sink.close();
    }
  }, 60_000);
});
