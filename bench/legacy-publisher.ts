/**
 * The event publisher's sink and page read as they were before commit e8d2c22, kept for
 * bench/events.ts to measure old against new in the same run (alternating drains): one
 * `js.publish` (a JetStream request) per event with 1,000 awaiting their ack, protobuf-es
 * create()+toBinary per event, and a page read with each variant key looked up in the
 * experiment's JSON per row. Not used by the server.
 */
import { toBinary } from "@bufbuild/protobuf";
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AssignmentEventSchema } from "../gen/ts/assignment/v1/experiment_service_pb.js";
import type { EventSink } from "../src/sinks/event-sink.js";
import { eventMessage, JetStreamSink, subjectOf } from "../src/sinks/jetstream-sink.js";
import type { Database } from "../src/store/database.js";
import { EventLog, type StoredEvent } from "../src/store/event-log.js";

export class LegacyJetStreamSink implements EventSink {
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

  /** The stream is made by the current sink's open (the same configuration). */
  static async open(o: { url: string; stream: string; subjectPrefix: string }): Promise<LegacyJetStreamSink> {
    await (await JetStreamSink.open(o)).close();
    const nc = await connect({ servers: o.url, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: "legacy-events" });
    return new LegacyJetStreamSink(nc, jetstream(nc), o.subjectPrefix, 1_000, o.stream);
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

/** EventLog whose `read` is the old statement (a join, the variant key looked up per row). */
export class LegacyEventLog extends EventLog {
  constructor(private readonly database: Database) {
    super(database);
  }

  override async read(after: bigint, limit: number): Promise<StoredEvent[]> {
    const { rows } = await this.database.query<{
      position: string;
      kind: number;
      experiment_id: number | null;
      key: string | null;
      unit_type: string | null;
      exp_unit_type: string | null;
      unit_id: string;
      variant_key: string | null;
      source: number | null;
      version: string | null;
      at: Date;
    }>(
      `SELECT ev.position::text AS position, ev.kind, ev.experiment_id, e.key, ev.unit_type, e.unit_type AS exp_unit_type,
              ev.unit_id, ev.source, ev.version::text AS version, ev.at,
              (SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = ev.variant) AS variant_key
         FROM assignment_events ev LEFT JOIN experiments e ON e.id = ev.experiment_id
        WHERE ev.position > $1
        ORDER BY ev.position
        LIMIT $2`,
      [after.toString(), limit],
    );
    return rows.map((r) => ({
      position: BigInt(r.position),
      kind: r.kind,
      experimentId: r.experiment_id ?? undefined,
      experimentKey: r.key ?? undefined,
      unitType: r.unit_type ?? r.exp_unit_type ?? "",
      unitId: r.unit_id,
      variantKey: r.variant_key ?? undefined,
      source: r.source ?? 0,
      version: BigInt(r.version ?? "0"),
      at: r.at,
    }));
  }
}
