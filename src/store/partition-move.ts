import type { Database, Queryable } from "./database.js";
import { sqlState } from "./pg-errors.js";

/**
 * The in-place upgrade of a populated assignments table to the partitioned one (migration
 * 7_partitioned-assignments; README "Partitioned assignments"). The migration made the partitioned
 * table beside the old one as assignments_partitioned, with a trigger that makes every change of
 * the old table in the new one too. What is left is done here, by the servers, while they serve:
 *
 * 1. Copy the old rows over in batches, in primary-key order, each batch one short transaction
 *    (`INSERT … SELECT … FOR KEY SHARE … ON CONFLICT DO NOTHING`). The cursor (the last key copied)
 *    is kept in assignments_partitioning, so a restarted server resumes where the copy stopped.
 *    Why it loses nothing and brings nothing back:
 *    - a row written after its key range was copied reached the new table through the trigger;
 *    - a row changed while its batch runs: whichever writes the new table second wins, and the
 *      copy never overwrites (DO NOTHING) while the trigger always does (DO UPDATE), so the
 *      newest values stay;
 *    - a row deleted (erasure) while its batch runs: FOR KEY SHARE makes the DELETE wait for the
 *      batch to commit, and its trigger then deletes the copy; a row deleted before the batch
 *      locks it is skipped by the batch. An erased row is never copied back.
 * 2. Swap: one transaction takes the old table's lock (briefly: it waits only for statements
 *    in flight, and gives up after LOCK_TIMEOUT to try again later), drops it with its trigger,
 *    renames the new table to assignments and gives it the old table's other triggers (the event
 *    log's).
 *
 * Several servers may run this at once: the cursor row is taken FOR UPDATE SKIP LOCKED, so one
 * copies while the others wait their turn. The old table is the one read and written until the
 * swap, so answers stay right throughout; after it, the same statements name the new table.
 */

/** Rows per batch: one short transaction each (about 0.1 s on PostgreSQL). */
export const DEFAULT_MOVE_BATCH_ROWS = 10_000;
/** How long the swap waits for the old table's lock before it lets go and tries again. */
const LOCK_TIMEOUT = "2s";

/** Whether the upgrade to the partitioned table is still under way (a move to finish). */
export async function partitionMovePending(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ pending: boolean }>(`SELECT to_regclass('assignments_partitioning') IS NOT NULL AS pending`);
  return rows[0]!.pending;
}

/** Partitions of the assignments table in use, or of the one being filled while an upgrade runs. */
export async function assignmentPartitionCount(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_inherits
      WHERE inhparent = coalesce(to_regclass('assignments_partitioned'), to_regclass('assignments'))`,
  );
  return rows[0]!.n;
}

type Step = { state: "copied"; rows: number } | { state: "busy" } | { state: "done" };

/** Copies the next batch, or swaps the tables when nothing is left to copy. */
export async function moveStep(db: Database, batchRows = DEFAULT_MOVE_BATCH_ROWS): Promise<Step> {
  try {
    return await db.transaction(async (tx): Promise<Step> => {
      if (!(await partitionMovePending(tx))) return { state: "done" };
      const { rows: cursor } = await tx.query<{ e: number | null; u: string | null }>(
        `SELECT after_experiment AS e, after_unit AS u FROM assignments_partitioning FOR UPDATE SKIP LOCKED`,
      );
      if (cursor.length === 0) return { state: "busy" };
      const { e, u } = cursor[0]!;
      const { rows } = await tx.query<{ n: number; e: number | null; u: string | null }>(
        `WITH batch AS (
           SELECT experiment_id, unit_id, variant, version, source, assigned_at FROM assignments
            ${e === null ? "" : "WHERE (experiment_id, unit_id) > ($2::int, $3::text)"}
            ORDER BY experiment_id, unit_id LIMIT $1 FOR KEY SHARE
         ), copied AS (
           INSERT INTO assignments_partitioned SELECT * FROM batch ON CONFLICT DO NOTHING
         ), last AS (
           SELECT experiment_id, unit_id FROM batch ORDER BY experiment_id DESC, unit_id DESC LIMIT 1
         )
         SELECT (SELECT count(*)::int FROM batch) AS n, last.experiment_id AS e, last.unit_id AS u
           FROM (SELECT 1) one LEFT JOIN last ON true`,
        e === null ? [batchRows] : [batchRows, e, u],
      );
      const r = rows[0]!;
      if (r.n > 0) {
        await tx.query(`UPDATE assignments_partitioning SET after_experiment = $1, after_unit = $2, rows_copied = rows_copied + $3`, [
          r.e,
          r.u,
          r.n,
        ]);
        return { state: "copied", rows: r.n };
      }
      // Nothing left behind the cursor: every old row is in the new table, and every later change
      // reached it through the trigger. Swap, holding the cursor row so no other server copies.
      await tx.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      await tx.query(`LOCK TABLE assignments IN ACCESS EXCLUSIVE MODE`);
      // The old table's own triggers (the event log's outbox, migration 8) go with it when it is
      // dropped: they are made again on the new table once it bears the name (their definitions
      // name the table), in this same transaction, so no write is ever without them.
      const { rows: triggers } = await tx.query<{ def: string }>(
        `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
          WHERE tgrelid = 'assignments'::regclass AND NOT tgisinternal
            AND tgname NOT IN ('assignments_mirror', 'assignments_mirror_truncate')
          ORDER BY tgname`,
      );
      await tx.query(`DROP TABLE assignments`);
      await tx.query(`DROP FUNCTION assignments_mirror(), assignments_mirror_truncate()`);
      await tx.query(`DROP TABLE assignments_partitioning`);
      await tx.query(`ALTER TABLE assignments_partitioned RENAME TO assignments`);
      await tx.query(`ALTER TABLE assignments RENAME CONSTRAINT assignments_partitioned_pkey TO assignments_pkey`);
      for (const t of triggers) await tx.query(t.def);
      return { state: "done" };
    });
  } catch (err) {
    // lock_not_available (the swap's lock wait timed out): statements kept the table busy; the
    // swap is tried again. undefined_table: another server swapped meanwhile. Anything else is
    // for the caller.
    const state = sqlState(err);
    // deadlock_detected, serialization_failure: a batch that met an erasure in the other order;
    // nothing of it was committed, so it is simply run again.
    if (state === "55P03" || state === "40P01" || state === "40001") return { state: "busy" };
    if (state === "42P01" && !(await partitionMovePending(db))) return { state: "done" };
    throw err;
  }
}

export interface PartitionMoveOptions {
  batchRows?: number;
  /** Wait between tries while another server holds the move (or the swap's lock timed out). */
  busyWaitMs?: number;
  /** Stops between batches (the cursor keeps the place; a later start resumes). */
  signal?: AbortSignal;
  /** Progress, about every `progressMs`, and the end. */
  progress?: (p: { rowsCopied: number; seconds: number; done: boolean }) => void;
  progressMs?: number;
  /** A step failed (the database unreachable, say): called, and the move tries again after
   * `retryMs` (default 10 s) instead of giving up; without it the error is thrown. */
  onError?: (err: unknown) => void;
  retryMs?: number;
}

/** Runs the move to its end (or until `signal` aborts): resolves true when the table is swapped. */
export async function runPartitionMove(db: Database, options: PartitionMoveOptions = {}): Promise<boolean> {
  const started = performance.now();
  let copied = 0;
  let reported = started;
  const every = options.progressMs ?? 10_000;
  while (!options.signal?.aborted) {
    let step: Step;
    try {
      step = await moveStep(db, options.batchRows);
    } catch (err) {
      if (!options.onError) throw err;
      options.onError(err);
      await sleep(options.retryMs ?? 10_000, options.signal);
      continue;
    }
    const now = performance.now();
    if (step.state === "done") {
      options.progress?.({ rowsCopied: copied, seconds: (now - started) / 1000, done: true });
      return true;
    }
    if (step.state === "copied") copied += step.rows;
    if (now - reported >= every) {
      reported = now;
      options.progress?.({ rowsCopied: copied, seconds: (now - started) / 1000, done: false });
    }
    if (step.state === "busy") await sleep(options.busyWaitMs ?? 1000, options.signal);
  }
  return false;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
