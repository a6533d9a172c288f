import type { StoredEvent } from "../store/event-log.js";

/**
 * Where the event publisher sends events (src/sinks/event-publisher.ts): JetStream here; a Kafka
 * sink is one more implementation of this. The contract the publisher relies on:
 * - `publish` resolves only once the engine has durably taken every event of the batch;
 * - calls may overlap: the publisher sends the next batch before the previous call resolved (two
 *   in flight at most, progress recorded in call order); the sink publishes batches in call
 *   order, and a batch must not resolve unless every batch of an earlier call that resolved, or
 *   will, is taken (a later batch fails when an earlier one failed and left it incomplete);
 * - publishing an event again (after a crash or a lease move) with the same position is dropped
 *   by the engine (JetStream: the message id within the stream's duplicate window; Kafka: an
 *   idempotent producer, or a consumer that skips positions it has seen).
 */
export interface EventSink {
  /** A name for logs and the publisher's stored progress (one row per sink name). */
  readonly name: string;
  publish(events: readonly StoredEvent[]): Promise<void>;
  close(): Promise<void>;
}
