import os from "node:os";
import type { Database, Session } from "../store/database.js";
import type { EventLog, StoredEvent } from "../store/event-log.js";
import type { EventSink } from "./event-sink.js";

/** Advisory-lock key of the publisher lease (session-level), per sink name. */
const LEASE_LOCK = 0x61_73_67_02;

export interface EventPublisherOptions {
  /** How often a server without the lease tries to take it; default 1,000 ms. This bounds the
   * takeover after the holder dies: its connection closes with it, PostgreSQL releases the lock,
   * and the next try of another server takes it. */
  leaseRetryMs?: number;
  /** Events per batch read and published; default 10,000. */
  batch?: number;
  /** Wait for new events while caught up (the sequencer wakes it on this server). */
  waitForEvents: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Each batch acknowledged: its events and the time of the ack (lag metrics, benchmarks). */
  onPublished?: (events: readonly StoredEvent[], ackedAt: number) => void;
  log: (msg: string, err?: unknown) => void;
}

/**
 * Publishes the event log to a sink, exactly one publisher at a time across every server: the
 * holder of a session-level advisory lock (the lease) on a connection of its own. Its progress
 * (the last position acknowledged) is stored in PostgreSQL through that same connection, so a
 * publisher that lost its lease (connection gone) cannot record progress. After a crash, or a
 * lease that moved, the new holder resumes after the stored position: the events published but
 * not yet recorded are published again with the same message ids, and the engine drops them
 * (JetStream's duplicate window must exceed the takeover time, which it does by far: 2 min vs
 * about `leaseRetryMs`).
 */
export class EventPublisher {
  private readonly stop = new AbortController();
  private running: Promise<void> | undefined;
  /** Whether this server holds the lease (tests, logs). */
  leader = false;

  constructor(
    private readonly db: Database,
    private readonly events: EventLog,
    /** The sink's name (its row of progress, its lease). */
    private readonly sinkName: string,
    /** Opens the sink (connecting to the engine); retried while the engine is away. */
    private readonly openSink: () => Promise<EventSink>,
    private readonly options: EventPublisherOptions,
  ) {}

  private sink: EventSink | undefined;

  start(): void {
    this.running = this.loop();
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
    await this.sink?.close().catch(() => {});
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.stop.signal.removeEventListener("abort", wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.stop.signal.addEventListener("abort", wake, { once: true });
    });
  }

  private async loop(): Promise<void> {
    const signal = this.stop.signal;
    const batch = this.options.batch ?? 10_000;
    while (!signal.aborted) {
      let lease: Session | undefined;
      try {
        lease = await this.db.session();
        const { rows } = await lease.query<{ got: boolean }>(`SELECT pg_try_advisory_lock($1, hashtext($2)) AS got`, [
          LEASE_LOCK,
          this.sinkName,
        ]);
        if (!rows[0]?.got) {
          lease.release();
          lease = undefined;
          await this.sleep(this.options.leaseRetryMs ?? 1_000);
          continue;
        }
        // Names the holder in pg_stat_activity (which server publishes: operators, the two-process
        // test); the session ends with the lease, so the name never outlives it.
        await lease.query(`SELECT set_config('application_name', $1, false)`, [
          `assignment-publisher ${os.hostname()}:${process.pid}`.slice(0, 63),
        ]);
        this.sink ??= await this.openSink();
        this.leader = true;
        await lease.query(`INSERT INTO assignment_event_sinks (name, position) VALUES ($1, 0) ON CONFLICT DO NOTHING`, [this.sinkName]);
        const { rows: at } = await lease.query<{ p: string }>(`SELECT position::text AS p FROM assignment_event_sinks WHERE name = $1`, [
          this.sinkName,
        ]);
        // The last position recorded; the last one read (sent, or in flight).
        let position = BigInt(at[0]!.p);
        let readAfter = position;
        let next: Promise<StoredEvent[]> | undefined;
        // The last batch sent, not recorded yet: recorded once the next one was sent (or nothing
        // follows), so that the engine stores the next batch while the sink checks this one; two
        // batches are in flight at most, and progress is recorded in order.
        let inflight: { done: Promise<void>; page: StoredEvent[] } | undefined;
        let failures = 0;
        const record = async (f: { done: Promise<void>; page: StoredEvent[] }) => {
          try {
            await f.done;
          } catch (err) {
            throw new SinkRefused(err);
          }
          const last = f.page[f.page.length - 1]!.position;
          this.options.onPublished?.(f.page, Date.now());
          await lease!.query(`UPDATE assignment_event_sinks SET position = $2, updated_at = now() WHERE name = $1 AND position < $2`, [
            this.sinkName,
            last.toString(),
          ]);
          position = last;
          failures = 0;
        };
        while (!signal.aborted) {
          try {
            const page = await (next ?? this.events.read(readAfter, batch));
            next = undefined;
            if (page.length === 0) {
              if (inflight) {
                const f = inflight;
                inflight = undefined;
                await record(f);
                continue;
              }
              // Proves the lease still stands (its connection answers) while idle.
              await lease.query(`SELECT 1`);
              await this.options.waitForEvents(200, signal);
              continue;
            }
            const last = page[page.length - 1]!.position;
            // Behind (a full page): the next page is read while this one is published; what it
            // holds does not depend on how the publish ends (a failed batch is published again).
            if (page.length === batch) {
              next = this.events.read(last, batch);
              next.catch(() => {}); // awaited above, unless the loop ends first
            }
            const done = this.sink.publish(page);
            done.catch(() => {}); // awaited by record, unless the loop ends first
            readAfter = last;
            const earlier = inflight;
            inflight = { done, page };
            if (earlier) await record(earlier);
          } catch (err) {
            if (!(err instanceof SinkRefused) || signal.aborted) throw err;
            // Published again from the last position recorded, once the batch still in flight
            // settled (it fails too when it hung from the refused one).
            await inflight?.done.catch(() => {});
            inflight = undefined;
            next = undefined;
            readAfter = position;
            if (failures % 20 === 0) this.options.log(`event sink ${this.sinkName} refused a batch; retrying`, err.cause);
            await this.sleep(Math.min(100 * 2 ** Math.min(failures, 4), 1_000));
            failures++;
          }
        }
      } catch (err) {
        if (!signal.aborted)
          this.options.log(`event publisher (${this.sinkName}) lost its lease or its database connection; retrying`, err);
        await this.sleep(this.options.leaseRetryMs ?? 1_000);
      } finally {
        this.leader = false;
        if (lease) {
          // Ends the session (and with it the lease) rather than returning a locked connection.
          lease.release(true);
        }
      }
    }
  }
}

/** The sink failed a batch (not the database): published again, the lease kept. */
class SinkRefused extends Error {
  constructor(cause: unknown) {
    super(`the event sink refused a batch: ${(cause as Error)?.message ?? cause}`, { cause });
  }
}
