import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AssignmentEventSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { StoredEvent } from "../store/event-log.js";
import type { EventSink } from "./event-sink.js";

export interface JetStreamSinkOptions {
  url: string;
  /** The stream, made (or updated) at start; default ASSIGNMENT_EVENTS. */
  stream?: string;
  /** Subjects are `<prefix>.experiment.<key>` and `<prefix>.erased.<unit type>`; default `assignments`. */
  subjectPrefix?: string;
  /** JetStream's de-duplication window (a republish within it is dropped); default 2 minutes. */
  duplicateWindowMs?: number;
  /** Messages awaiting their ack at once; default 1,000. */
  inFlight?: number;
}

/** The subject of one event: one per experiment; erasures (no experiment) one per unit type. */
export function subjectOf(prefix: string, e: Pick<StoredEvent, "experimentKey" | "unitType">): string {
  return e.experimentKey === undefined ? `${prefix}.erased.${e.unitType}` : `${prefix}.experiment.${e.experimentKey}`;
}

/** An event as published: the AssignmentEvent message of the API, in protobuf binary. */
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

/**
 * NATS JetStream: one message per event, its position as the message id (Nats-Msg-Id), so that
 * JetStream drops a republish within the duplicate window. Messages of a batch are sent in order
 * on one connection (one stream: stored in that order) with up to `inFlight` acks awaited at once.
 */
export class JetStreamSink implements EventSink {
  readonly name: string;
  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly prefix: string,
    private readonly inFlight: number,
    stream: string,
  ) {
    this.name = `jetstream:${stream}`;
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
      return new JetStreamSink(nc, jetstream(nc), prefix, o.inFlight ?? 1_000, stream);
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
  }

  async publish(events: readonly StoredEvent[]): Promise<void> {
    let failure: unknown;
    const pending = new Set<Promise<unknown>>();
    for (const e of events) {
      if (failure) break;
      const p = this.js
        .publish(subjectOf(this.prefix, e), toBinary(AssignmentEventSchema, eventMessage(e)), { msgID: e.position.toString() })
        .catch((err: unknown) => (failure ??= err))
        .finally(() => pending.delete(p));
      pending.add(p);
      if (pending.size >= this.inFlight) await Promise.race(pending);
    }
    await Promise.all(pending);
    if (failure) throw failure;
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}
