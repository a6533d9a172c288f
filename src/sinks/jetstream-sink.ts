import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { connect, createInbox, headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { AssignmentEventSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { StoredEvent } from "../store/event-log.js";
import { encodeEvents } from "./event-encoding.js";
import type { EventSink } from "./event-sink.js";

export interface JetStreamSinkOptions {
  url: string;
  /** The stream, made (or updated) at start; default ASSIGNMENT_EVENTS. */
  stream?: string;
  /** Subjects are `<prefix>.experiment.<key>` and `<prefix>.erased.<unit type>`; default `assignments`. */
  subjectPrefix?: string;
  /** JetStream's de-duplication window (a republish within it is dropped); default 2 minutes. */
  duplicateWindowMs?: number;
  /** A batch fails (and is published again) when JetStream sent no ack for this long while some
   * are missing; default 5,000 ms. */
  ackTimeoutMs?: number;
}

/** The subject of one event: one per experiment; erasures (no experiment) one per unit type. */
export function subjectOf(prefix: string, e: Pick<StoredEvent, "experimentKey" | "unitType">): string {
  return e.experimentKey === undefined ? `${prefix}.erased.${e.unitType}` : `${prefix}.experiment.${e.experimentKey}`;
}

/** An event as published: the AssignmentEvent message of the API (in protobuf binary, as
 * `encodeEvents` writes it; this is the reference it is tested against). */
export function eventMessage(e: StoredEvent) {
  return create(AssignmentEventSchema, {
    position: e.position,
    kind: e.kind,
    experimentKey: e.experimentKey ?? "",
    unitType: e.unitType,
    unitId: e.unitId,
    variantKey: e.variantKey ?? "",
    source: e.source,
    experimentVersion: e.version,
    time: timestampFromDate(e.at),
  });
}

/** A batch being published: which of its messages JetStream acknowledged. */
interface Attempt {
  id: number;
  acked: Uint8Array;
  remaining: number;
  lastAckAt: number;
  done: (err?: Error) => void;
}

/** The stream's last message as this sink knows it: its sequence, and its position (its message id;
 * undefined when the stream is empty or the message is not an event's). */
interface Tail {
  seq: number;
  position: bigint | undefined;
}

/**
 * NATS JetStream: one message per event, its position as the message id (Nats-Msg-Id), so that
 * JetStream drops a republish within the duplicate window.
 *
 * Events after the stream's last one (every batch while this sink publishes alone, which the lease
 * makes the rule) go out as a chain, with core NATS and without a reply: message k of the batch
 * carries `Nats-Expected-Last-Sequence: <the stream's last sequence> + k`, so JetStream stores it
 * only when everything before it was stored, and refuses (silently: no reply) every message after a
 * hole. The stream therefore always holds a gap-free prefix of the batch, and the batch is taken
 * once the stream's last sequence is the chain's end and the message there is the batch's last
 * position (read back: a flush, the stream's info, one message). Anything else (a refusal, NATS
 * restarted or went quiet for `ackTimeoutMs`) fails the batch, the sink reads the stream's last
 * message again, and the publisher publishes the batch again: what the stream holds is skipped.
 * Publishing no reply per message saves the PubAck each (nats-server sending it, this process
 * parsing it): about half of what a batch cost both (BENCHMARKS.md, "Events to JetStream").
 *
 * Events at or before the stream's last position (a republish after a crash or a lease move, or
 * after a failed batch) are published as before the chain, each with a reply subject of its own
 * under one inbox subscription (`<inbox>.<attempt>.<index>`), where JetStream sends its PubAck
 * (taken once every message has one; an error PubAck, a status reply such as 503, or no ack for
 * `ackTimeoutMs` fails the batch): JetStream drops those it holds, by message id, and stores any it
 * lacks, so that a hole left by an earlier publisher is filled rather than skipped.
 * (nats-server checks the message id before the expected sequence: a duplicate is dropped as a
 * duplicate whatever sequence it expects, checked against nats-server 2.9.10.)
 */
export class JetStreamSink implements EventSink {
  readonly name: string;
  private readonly inbox: string;
  private attempts = 0;
  private current: Attempt | undefined;
  /** Undefined: to be read from the stream before the next chain (at start, after a failure). */
  private tail: Tail | undefined;
  /** Resolves once the batch of the latest call was sent (or failed before). */
  private sending: Promise<void> = Promise.resolve();
  /** Resolves once the batch of the latest call is known stored (true) or failed (false). */
  private stored: Promise<boolean> = Promise.resolve(true);
  /** Counts failures: a batch sent in an earlier generation than now hangs from a failed one. */
  private generation = 0;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly prefix: string,
    private readonly stream: string,
    private readonly ackTimeoutMs: number,
  ) {
    this.name = `jetstream:${stream}`;
    this.inbox = createInbox();
    this.nc.subscribe(`${this.inbox}.>`, { callback: (err, msg) => this.onAck(err, msg) });
  }

  static async open(o: JetStreamSinkOptions): Promise<JetStreamSink> {
    const stream = o.stream ?? "ASSIGNMENT_EVENTS";
    const prefix = o.subjectPrefix ?? "assignments";
    // Reconnects forever: a NATS restart is waited out (publishes fail meanwhile and are retried).
    const nc = await connect({ servers: o.url, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: "assignment-server-events" });
    try {
      const ackTimeoutMs = o.ackTimeoutMs ?? 5_000;
      const jsm = await jetstreamManager(nc, { timeout: ackTimeoutMs });
      const config = {
        name: stream,
        subjects: [`${prefix}.>`],
        duplicate_window: (o.duplicateWindowMs ?? 120_000) * 1_000_000,
      };
      try {
        await jsm.streams.info(stream);
        await jsm.streams.update(stream, { subjects: config.subjects, duplicate_window: config.duplicate_window });
      } catch (err) {
        if (!/stream not found/i.test(String((err as Error).message))) throw err;
        await jsm.streams.add(config);
      }
      return new JetStreamSink(nc, jsm, prefix, stream, ackTimeoutMs);
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Calls may overlap (the publisher sends the next batch while this one is checked): batches are
   * sent in call order, each chain after the previous batch's end, and checked concurrently. A
   * failure fails every batch sent after it too (their chain hangs from it).
   */
  async publish(events: readonly StoredEvent[]): Promise<void> {
    if (events.length === 0) return;
    const previous = this.sending;
    const previousStored = this.stored;
    let sent!: () => void;
    let settle!: (stored: boolean) => void;
    this.sending = new Promise<void>((r) => (sent = r));
    this.stored = new Promise<boolean>((r) => (settle = r));
    let stored = false;
    try {
      await this.sendAndCheck(events, previous, previousStored, sent);
      stored = true;
    } finally {
      settle(stored);
    }
  }

  /** publish's work: sends the batch after `previous` was sent, then checks that it was stored
   * (`sent` once sent or failed; `previousStored`: the outcome of the batch before it). */
  private async sendAndCheck(
    events: readonly StoredEvent[],
    previous: Promise<void>,
    previousStored: Promise<boolean>,
    sent: () => void,
  ): Promise<void> {
    let check: ((superseded: () => boolean) => Promise<Tail>) | undefined;
    let generation = this.generation;
    try {
      await previous;
      generation = this.generation;
      let tail = this.tail ?? (await this.readTail());
      // Those the stream may hold already: acknowledged one by one (duplicates dropped, holes filled).
      let split = 0;
      if (tail.position !== undefined) while (split < events.length && events[split]!.position <= tail.position) split++;
      if (split > 0) {
        this.tail = undefined;
        await this.publishAcked(events.slice(0, split));
        if (split === events.length) return;
        tail = await this.readTail();
      }
      const chained = split === 0 ? events : events.slice(split);
      check = this.sendChain(chained, tail.seq);
      // The next batch chains after this one's end, before this one is checked.
      this.tail = { seq: tail.seq + chained.length, position: chained[chained.length - 1]!.position };
    } catch (err) {
      this.failed(generation);
      throw err;
    } finally {
      sent();
    }
    try {
      await check!(() => this.generation !== generation);
    } catch (err) {
      // This chain hangs from the batch before it: while that one is still checked, it may be why
      // this one is not stored (a later batch's check can give up first). Its outcome is awaited,
      // so that batches fail in order: the one before is not told that its chain broke because of
      // this one, and this one says so when that one failed after this chain was sent.
      const before = await previousStored;
      if (!before && this.generation !== generation) throw new Error("a batch sent before this one failed: its chain is broken");
      this.failed(generation);
      throw err;
    }
  }

  /** A batch of `generation` failed: the tail is read again, and the batches sent after it fail. */
  private failed(generation: number): void {
    if (this.generation !== generation) return;
    this.generation++;
    this.tail = undefined;
  }

  /** The stream's last message now. */
  private async readTail(): Promise<Tail> {
    const { state } = await this.jsm.streams.info(this.stream);
    if (state.messages === 0 || state.last_seq === 0) return { seq: state.last_seq, position: undefined };
    const m = await this.jsm.streams.getMessage(this.stream, { seq: state.last_seq });
    const id = m?.header?.get("Nats-Msg-Id");
    return { seq: state.last_seq, position: id && /^[0-9]{1,19}$/.test(id) ? BigInt(id) : undefined };
  }

  /** Publishes `events` as a chain after the stream's sequence `after`; resolves with the new tail
   * once the stream holds them all. */
  private sendChain(events: readonly StoredEvent[], after: number): (superseded: () => boolean) => Promise<Tail> {
    const data = encodeEvents(events);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const h = headers();
      h.set("Nats-Msg-Id", e.position.toString());
      // 0 (an empty stream) is no condition to nats-server: the first message of a new stream is
      // taken as it comes, and the next one expects it.
      h.set("Nats-Expected-Last-Sequence", String(after + i));
      this.nc.publish(subjectOf(this.prefix, e), data[i]!, { headers: h });
    }
    const end: Tail = { seq: after + events.length, position: events[events.length - 1]!.position };
    return (superseded) => this.checkChain(events.length, after, end, superseded);
  }

  /** Resolves once the stream holds the chain of `count` messages after `after`, ending at `end`. */
  private async checkChain(count: number, after: number, end: Tail, superseded: () => boolean): Promise<Tail> {
    // The chain's end holding this batch's last event means every message of it is in the stream
    // (each was stored only after the one before it): one request, answered after the server read
    // every message before it on this connection. Until it is there (JetStream still storing), the
    // stream's last sequence tells whether it still moves.
    let last = -1;
    let movedAt = Date.now();
    for (;;) {
      const m = await this.jsm.streams.getMessage(this.stream, { seq: end.seq }).catch((err: Error) => {
        throw new Error(`JetStream did not answer for the batch's end (message ${end.seq}): ${err.message}`);
      });
      if (m) {
        const id = m.header?.get("Nats-Msg-Id");
        if (id !== end.position!.toString())
          throw new Error(
            `the stream's message ${end.seq} is ${id ? `position ${id}` : "not an event"}, not the batch's last, ${end.position}`,
          );
        return end;
      }
      if (superseded()) throw new Error("a batch sent before this one failed: its chain is broken");
      const { state } = await this.jsm.streams.info(this.stream);
      if (state.last_seq >= end.seq) throw new Error(`the stream has no message ${end.seq}, yet its last sequence is ${state.last_seq}`);
      if (state.last_seq !== last) {
        last = state.last_seq;
        movedAt = Date.now();
      } else if (Date.now() - movedAt >= this.ackTimeoutMs)
        throw new Error(
          `JetStream stored ${Math.max(0, state.last_seq - after)} of ${count} messages (its last sequence ${state.last_seq}, the chain's end ${end.seq}), then none for ${this.ackTimeoutMs} ms`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Publishes `events` with a PubAck each; resolves once every one has been acknowledged. */
  private async publishAcked(events: readonly StoredEvent[]): Promise<void> {
    const data = encodeEvents(events);
    const id = ++this.attempts;
    const reply = `${this.inbox}.${id}.`;
    const taken = new Promise<void>((resolve, reject) => {
      this.current = {
        id,
        acked: new Uint8Array(events.length),
        remaining: events.length,
        lastAckAt: Date.now(),
        done: (err) => (err ? reject(err) : resolve()),
      };
    });
    const attempt = this.current!;
    // Fails the batch when JetStream went quiet: no ack for ackTimeoutMs while some are missing.
    const check = setInterval(
      () => {
        if (Date.now() - attempt.lastAckAt >= this.ackTimeoutMs)
          this.finish(
            attempt,
            new Error(
              `JetStream acknowledged ${events.length - attempt.remaining} of ${events.length} messages, then none for ${this.ackTimeoutMs} ms`,
            ),
          );
      },
      Math.max(10, this.ackTimeoutMs / 4),
    );
    try {
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!;
        const h = headers();
        h.set("Nats-Msg-Id", e.position.toString());
        this.nc.publish(subjectOf(this.prefix, e), data[i]!, { headers: h, reply: reply + i });
      }
      attempt.lastAckAt = Date.now();
    } catch (err) {
      this.finish(attempt, err as Error);
    }
    try {
      await taken;
    } finally {
      clearInterval(check);
    }
  }

  private finish(attempt: Attempt, err?: Error): void {
    if (this.current !== attempt) return;
    this.current = undefined;
    attempt.done(err);
  }

  private onAck(err: Error | null, msg: Msg): void {
    const attempt = this.current;
    if (!attempt || err) return;
    const tail = msg.subject.slice(this.inbox.length + 1);
    const dot = tail.indexOf(".");
    if (Number(tail.slice(0, dot)) !== attempt.id) return; // an earlier attempt's
    const i = Number(tail.slice(dot + 1));
    if (!(i >= 0 && i < attempt.acked.length)) return;
    const refused = refusal(msg, this.stream);
    if (refused !== undefined) {
      this.finish(attempt, new Error(`JetStream refused message ${i} of the batch: ${refused}`));
      return;
    }
    if (attempt.acked[i]) return;
    attempt.acked[i] = 1;
    attempt.lastAckAt = Date.now();
    if (--attempt.remaining === 0) this.finish(attempt);
  }

  async close(): Promise<void> {
    if (this.current) this.finish(this.current, new Error("the JetStream sink closed"));
    await this.nc.close();
  }
}

/** Why a reply is not a PubAck of `stream` (undefined: it is one). */
function refusal(msg: Msg, stream: string): string | undefined {
  const h = msg.headers;
  // A status reply (503: no stream listens on the subject), or nothing.
  if (h?.hasError || msg.data.length === 0) return h ? `${h.code} ${h.description}` : "an empty reply";
  let ack: { stream?: string; seq?: number; error?: { code?: number; err_code?: number; description?: string } };
  try {
    ack = msg.json();
  } catch {
    return `not JSON: ${msg.string().slice(0, 200)}`;
  }
  if (ack.error) return `${ack.error.code} ${ack.error.err_code ?? ""} ${ack.error.description ?? ""}`;
  if (ack.stream !== stream || typeof ack.seq !== "number") return `not a PubAck of ${stream}: ${JSON.stringify(ack).slice(0, 200)}`;
  return undefined;
}
