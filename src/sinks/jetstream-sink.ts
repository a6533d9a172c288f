import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstreamManager } from "@nats-io/jetstream";
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

/**
 * NATS JetStream: one message per event, its position as the message id (Nats-Msg-Id), so that
 * JetStream drops a republish within the duplicate window.
 *
 * A batch is published with core NATS, the way a JetStream publish is made but without a request
 * (its own promise, timer and reply subscription) per message: every message of the batch goes
 * out in order on the one connection in a single turn of the event loop, each with a reply
 * subject of its own under one inbox subscription (`<inbox>.<attempt>.<index>`), where JetStream
 * sends its PubAck. The batch is taken once every message has a PubAck naming this stream; an
 * error PubAck, a status reply (503: no stream listens on the subject), or no ack for `ackTimeoutMs`
 * fails the batch, and the publisher publishes it again (JetStream drops the messages it already
 * stored, by message id). Acks of an earlier attempt are ignored.
 */
export class JetStreamSink implements EventSink {
  readonly name: string;
  private readonly inbox: string;
  private attempts = 0;
  private current: Attempt | undefined;

  private constructor(
    private readonly nc: NatsConnection,
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
      const jsm = await jetstreamManager(nc);
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
      return new JetStreamSink(nc, prefix, stream, o.ackTimeoutMs ?? 5_000);
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
  }

  async publish(events: readonly StoredEvent[]): Promise<void> {
    if (events.length === 0) return;
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
