import { ExperimentStatus, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { Database } from "./database.js";

const SOURCE_LABELS: Record<number, string> = { [Source.HASH]: "hash", [Source.IMPORT]: "import", [Source.OVERRIDE]: "override" };

/** What an event says happened (the kind column of assignment_events). */
export const EventKind = {
  ASSIGNED: 1,
  IMPORTED: 2,
  OVERWRITTEN: 3,
  COPIED: 4,
  OVERRIDE_SET: 5,
  OVERRIDE_CLEARED: 6,
  ERASED: 7,
} as const;

/** One event as stored (keys resolved by the reader). */
export interface StoredEvent {
  position: bigint;
  kind: number;
  /** Undefined for ERASED (an erasure names the unit, in every experiment of its type). */
  experimentId: number | undefined;
  experimentKey: string | undefined;
  unitType: string;
  unitId: string;
  /** The variant after the change; for OVERRIDE_CLEARED the override's variant; undefined for ERASED. */
  variantKey: string | undefined;
  source: number;
  version: bigint;
  at: Date;
}

/** Advisory-lock key of a sequencer step (transaction-level): one step at a time across servers. */
const SEQUENCER_LOCK = 0x61_73_67_01;

/**
 * The event log (SPEC.md "Assignment events"; migrations/8_assignment-events.sql).
 *
 * Writers never number events: the triggers write outbox rows in the writing statement's own
 * transaction, and stamp the transaction at its commit (a deferred trigger: the last thing it
 * does). `sequence()` numbers them, under a transaction-level advisory lock so that steps run one
 * at a time whatever number of servers call it. A step moves every outbox row its snapshot sees,
 * that is every row of every transaction committed before the step's statement began, and none of
 * a transaction still in flight: those commit later and are numbered by a later step, after
 * everything numbered now. A consumer that read up to position p therefore never finds an event
 * at or below p appearing later, and nothing is skipped (no position is ever given below the last).
 *
 * Inside one step, transactions are ordered by their commit stamp, their rows kept together in
 * outbox id order. When two transactions change the same unit, the second waited for the first to
 * commit (row lock, or it saw the first's committed row), so it was stamped after the first: the
 * changes of one unit keep their commit order exactly. Transactions with nothing in common are in
 * the order they reached their commit, which is commit order up to the instant between the stamp
 * and the commit record (true commit order is only in the WAL).
 */
export class EventLog {
  constructor(private readonly db: Database) {}

  /** Numbers the committed outbox rows and applies their count deltas; returns the events
   * numbered (0 when another server's step held the lock, or nothing was waiting). */
  async sequence(): Promise<number> {
    // The transactions' table, not the outbox: every writer of outbox rows marks its transaction
    // there, and it holds a row per transaction, so this stays cheap when a large write left the
    // outbox empty but bloated until VACUUM (reading that every step cost seconds at 10 million rows).
    const { rows: waiting } = await this.db.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM assignment_outbox_tx) AS any`);
    if (!waiting[0]?.any) return 0;
    return this.db.transaction(async (tx) => {
      const { rows: lock } = await tx.query<{ got: boolean }>(`SELECT pg_try_advisory_xact_lock($1) AS got`, [SEQUENCER_LOCK]);
      if (!lock[0]?.got) return 0;
      // No JIT for the move: the planner knows nothing of the queue tables' rows (emptied every
      // step, never analyzed) and estimated the join at 136 million rows, so PostgreSQL compiled
      // the statement with LLVM every step: about 1 s of a 10,000-event step, 8× the move itself.
      await tx.query(`SET LOCAL jit = off`);
      // A new statement, so a new snapshot: it sees every step committed before the lock was ours.
      const { rows } = await tx.query<{ n: string }>(
        `WITH moved AS (
           DELETE FROM assignment_outbox RETURNING *
         ), committed AS (
           DELETE FROM assignment_outbox_tx RETURNING xid, commit_seq
         ), numbered AS (
           SELECT m.*, s.last_position + row_number() OVER (ORDER BY c.commit_seq, m.id) AS position
             FROM moved m LEFT JOIN committed c ON c.xid = m.xid CROSS JOIN assignment_event_sequence s
            WHERE m.kind <> 0
         ), ev AS (
           INSERT INTO assignment_events (position, kind, experiment_id, unit_type, unit_id, variant, source, version, at)
           SELECT position, kind, experiment_id, unit_type, unit_id, coalesce(variant, old_variant),
                  coalesce(source, old_source), version, at
             FROM numbered
           RETURNING 1
         ), deltas AS (
           SELECT experiment_id, source, variant, sum(d)::bigint AS d FROM (
             SELECT experiment_id, source, variant, 1 AS d FROM moved WHERE variant IS NOT NULL
             UNION ALL
             SELECT experiment_id, old_source, old_variant, -1 FROM moved WHERE old_variant IS NOT NULL
           ) x GROUP BY experiment_id, source, variant
         ), counted AS (
           INSERT INTO assignment_counts AS c (experiment_id, source, variant, n)
           SELECT experiment_id, source, variant, d FROM deltas WHERE d <> 0
           ON CONFLICT (experiment_id, source, variant) DO UPDATE SET n = c.n + excluded.n
           RETURNING 1
         )
         -- Data-modifying CTEs all run to completion, read or not (counted is not).
         UPDATE assignment_event_sequence
            SET last_position = last_position + (SELECT count(*) FROM ev)
         RETURNING (SELECT count(*) FROM ev)::text AS n`,
      );
      return Number(rows[0]?.n ?? 0);
    });
  }

  /** Units per variant and source of every RUNNING experiment (not archived), as of the last
   * sequencer step (the metrics gauge; GetExperimentStats adds what is not sequenced yet). */
  async runningCounts(): Promise<{ experiment: string; variant: string; source: string; units: number }[]> {
    const { rows } = await this.db.query<{ key: string; variant: string; source: number; n: string }>(
      `SELECT e.key, coalesce((SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = c.variant), c.variant::text) AS variant,
              c.source, c.n::text AS n
         FROM assignment_counts c JOIN experiments e ON e.id = c.experiment_id
        WHERE e.status = ${ExperimentStatus.RUNNING} AND e.archived_at IS NULL AND c.n > 0
        ORDER BY e.key, c.source, c.variant`,
    );
    return rows.map((r) => ({
      experiment: r.key,
      variant: r.variant,
      source: SOURCE_LABELS[r.source] ?? String(r.source),
      units: Number(r.n),
    }));
  }

  /** The last position given (0: none yet). */
  async lastPosition(): Promise<bigint> {
    const { rows } = await this.db.query<{ p: string }>(`SELECT last_position::text AS p FROM assignment_event_sequence`);
    return BigInt(rows[0]?.p ?? "0");
  }

  /** The oldest position still retained: the first event a consumer starting from the
   * beginning gets. Past the last position when every event was pruned. */
  async oldestPosition(): Promise<bigint> {
    const { rows } = await this.db.query<{ p: string }>(
      `SELECT coalesce((SELECT min(position) FROM assignment_events), (SELECT last_position + 1 FROM assignment_event_sequence))::text AS p`,
    );
    return BigInt(rows[0]!.p);
  }

  /**
   * Up to `limit` events after `after`, in position order; with `only`, those of its experiments
   * and the erasures of its unit types (an erasure names a unit, not an experiment).
   */
  async read(
    after: bigint,
    limit: number,
    only?: { experimentIds: readonly number[]; unitTypes: readonly string[] },
  ): Promise<StoredEvent[]> {
    // The events alone, then the keys of their experiments and variants once a page (not a join
    // with a lookup into the experiment's variants per row: a third of the publisher's read cost).
    const { rows } = await this.db.query<{
      position: string;
      kind: number;
      experiment_id: number | null;
      unit_type: string | null;
      unit_id: string;
      variant: number | null;
      source: number | null;
      version: string | null;
      at_ms: number;
    }>(
      // The time as milliseconds (what a Date holds): parsing timestamptz text cost the publisher
      // a quarter of its CPU per event.
      `SELECT ev.position::text AS position, ev.kind, ev.experiment_id, ev.unit_type, ev.unit_id, ev.variant, ev.source,
              ev.version::text AS version, floor(extract(epoch FROM ev.at) * 1000)::float8 AS at_ms
         FROM assignment_events ev
        WHERE ev.position > $1
          AND ($3::int[] IS NULL OR ev.experiment_id = ANY($3::int[]) OR (ev.experiment_id IS NULL AND ev.unit_type = ANY($4::text[])))
        ORDER BY ev.position
        LIMIT $2`,
      [after.toString(), limit, only ? [...only.experimentIds] : null, only ? [...only.unitTypes] : null],
    );
    const ids = new Set<number>();
    for (const r of rows) if (r.experiment_id !== null) ids.add(r.experiment_id);
    const experiments = new Map<number, { key: string; unitType: string; variants: Map<number, string> }>();
    if (ids.size > 0) {
      const { rows: found } = await this.db.query<{ id: number; key: string; unit_type: string; variants: { id: number; key: string }[] }>(
        `SELECT id, key, unit_type, variants FROM experiments WHERE id = ANY($1::int[])`,
        [[...ids]],
      );
      for (const x of found)
        experiments.set(x.id, { key: x.key, unitType: x.unit_type, variants: new Map(x.variants.map((v) => [Number(v.id), v.key])) });
    }
    return rows.map((r) => {
      const x = r.experiment_id === null ? undefined : experiments.get(r.experiment_id);
      return {
        position: BigInt(r.position),
        kind: r.kind,
        experimentId: r.experiment_id ?? undefined,
        experimentKey: x?.key,
        unitType: r.unit_type ?? x?.unitType ?? "",
        unitId: r.unit_id,
        variantKey: r.variant === null ? undefined : x?.variants.get(r.variant),
        source: r.source ?? 0,
        version: BigInt(r.version ?? "0"),
        at: new Date(r.at_ms),
      };
    });
  }

  /**
   * Removes events older than `maxAgeMs` or beyond the newest `maxEvents` (either may be
   * undefined: no limit of that kind), but none an event sink has not published; returns the
   * number removed. The last position is kept
   * whatever is removed, so numbering continues.
   */
  async prune(maxAgeMs: number | undefined, maxEvents: number | undefined): Promise<number> {
    let removed = 0;
    // Never what an event sink has not published yet.
    const unpublished = `AND position <= coalesce((SELECT min(position) FROM assignment_event_sinks), 9223372036854775807)`;
    if (maxAgeMs !== undefined) {
      const { rowCount } = await this.db.query(
        `DELETE FROM assignment_events WHERE position <= (
           SELECT max(position) FROM assignment_events WHERE sequenced_at < now() - make_interval(secs => $1::double precision / 1000)) ${unpublished}`,
        [maxAgeMs],
      );
      removed += rowCount;
    }
    if (maxEvents !== undefined) {
      const { rowCount } = await this.db.query(
        `DELETE FROM assignment_events WHERE position <= (SELECT last_position - $1 FROM assignment_event_sequence) ${unpublished}`,
        [maxEvents],
      );
      removed += rowCount;
    }
    return removed;
  }
}
