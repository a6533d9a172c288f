import type { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { StoredAssignment } from "../engine/evaluate.js";
import { Coalescer } from "../util/coalescer.js";
import type { Database } from "./database.js";

/** A (experiment, unit) pair whose stored assignment is wanted. */
export interface CellKey {
  experimentId: number;
  unitId: string;
}

export interface NewAssignment extends CellKey {
  variantId: number;
  /** The experiment's version at assignment. */
  version: bigint;
  source: Source;
}

/** What is stored for one inserted row: its own value (`won`) or that of whoever stored the cell
 * first (undefined in the rare case where that row was removed again, by ClearOverrides, before it
 * could be read). */
export interface InsertOutcome {
  stored: StoredAssignment | undefined;
  won: boolean;
}

export interface AssignmentStoreOptions {
  /** INSERT statements running at once before new rows wait to join a shared one; default 4. */
  writeConcurrency?: number;
  /** Most rows in one shared INSERT; default 20,000. */
  maxBatchRows?: number;
  /** Longest a row waits for a shared INSERT while all slots are busy; default 2 ms. */
  maxWaitMs?: number;
  /** Called with the number of rows of each INSERT statement (metrics). */
  onInsertBatch?: (rows: number) => void;
}

/**
 * Stored assignments in PostgreSQL, read and written in batches: one statement per batch, never
 * one per row. Concurrent inserts from many calls are coalesced into shared statements.
 */
export class AssignmentStore {
  private readonly writes: Coalescer<NewAssignment, InsertOutcome>;
  private readonly onInsertBatch: ((rows: number) => void) | undefined;

  constructor(
    private readonly db: Database,
    options: AssignmentStoreOptions = {},
  ) {
    this.onInsertBatch = options.onInsertBatch;
    this.writes = new Coalescer((rows) => this.insertNow(rows), {
      concurrency: options.writeConcurrency ?? 4,
      maxItems: options.maxBatchRows ?? 20_000,
      maxWaitMs: options.maxWaitMs ?? 2,
    });
  }

  /** Rows waiting for or inside an INSERT. */
  get pendingWrites(): number {
    return this.writes.pending;
  }

  /** Resolves when every accepted write has been answered. */
  flush(): Promise<void> {
    return this.writes.drain();
  }

  /** Positional: element i is the stored assignment of cells[i], or undefined. */
  async read(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[]> {
    const out = new Array<StoredAssignment | undefined>(cells.length);
    if (cells.length === 0) return out;
    const { rows } = await this.db.query<{ i: string; variant: number; source: number }>(
      `SELECT t.i, a.variant, a.source
         FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS t(e, u, i)
         JOIN assignments a ON a.experiment_id = t.e AND a.unit_id = t.u`,
      [cells.map((c) => c.experimentId), cells.map((c) => c.unitId)],
    );
    for (const r of rows) out[Number(r.i) - 1] = { variantId: r.variant, source: r.source };
    return out;
  }

  /**
   * Stores new assignments (INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING, shared with
   * concurrent callers), then reads back the cells that lost a race to another writer.
   * Positional: element i is the outcome for rows[i].
   */
  insert(rows: NewAssignment[]): Promise<InsertOutcome[]> {
    return this.writes.submit(rows);
  }

  private async insertNow(rows: readonly NewAssignment[]): Promise<InsertOutcome[]> {
    // Rows of different callers may name the same cell: insert each cell once, through the
    // first row naming it (its representative).
    const firstOf = new Map<string, number>();
    const rep = rows.map((r, i) => {
      const id = cellId(r.experimentId, r.unitId);
      const seen = firstOf.get(id);
      if (seen !== undefined) return seen;
      firstOf.set(id, i);
      return i;
    });
    const unique = [...firstOf.values()];
    // Every writer inserts in the same order, so two racing statements wait on each other
    // instead of deadlocking.
    unique.sort((a, b) => compareCells(rows[a], rows[b]));
    const position = new Map(unique.map((rowIndex, k) => [rowIndex, k]));
    const n = unique.length;
    this.onInsertBatch?.(n);
    const e = new Array<number>(n);
    const u = new Array<string>(n);
    const v = new Array<number>(n);
    const ver = new Array<string>(n);
    const s = new Array<number>(n);
    unique.forEach((idx, k) => {
      const r = rows[idx];
      e[k] = r.experimentId;
      u[k] = r.unitId;
      v[k] = r.variantId;
      ver[k] = r.version.toString();
      s[k] = r.source;
    });
    // The common case (every row new) returns one row with a count, not n unit ids to parse: the
    // inserted cells are listed only when some were not.
    const { rows: answer } = await this.db.query<{ n: number; e: number[] | null; u: string[] | null }>(
      `WITH ins AS (
         INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT * FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[], $5::smallint[])
         ON CONFLICT DO NOTHING
         RETURNING experiment_id, unit_id
       )
       SELECT count(*)::int AS n,
              CASE WHEN count(*) < $6 THEN array_agg(experiment_id) END AS e,
              CASE WHEN count(*) < $6 THEN array_agg(unit_id) END AS u
         FROM ins`,
      [e, u, v, ver, s, n],
    );
    const inserted = answer[0].n === n ? [] : (answer[0].e ?? []).map((id, k) => ({ e: id, u: answer[0].u![k] }));
    const outcome: InsertOutcome[] = unique.map((idx) => ({
      stored: { variantId: rows[idx].variantId, source: rows[idx].source },
      won: true,
    }));
    if (answer[0].n < n) {
      const winners = new Set(inserted.map((r) => cellId(r.e, r.u)));
      const lost: number[] = [];
      unique.forEach((idx, k) => {
        if (!winners.has(cellId(rows[idx].experimentId, rows[idx].unitId))) lost.push(k);
      });
      const current = await this.read(lost.map((k) => rows[unique[k]]));
      lost.forEach((k, j) => (outcome[k] = { stored: current[j], won: false }));
    }
    // Only the representative row was written; a later row naming the same cell (another
    // caller's) lost the race to it and must not answer NEW as well.
    return rows.map((_, i) => {
      const o = outcome[position.get(rep[i])!];
      return rep[i] === i ? o : { stored: o.stored, won: false };
    });
  }
}

function compareCells(a: CellKey, b: CellKey): number {
  if (a.experimentId !== b.experimentId) return a.experimentId - b.experimentId;
  return a.unitId < b.unitId ? -1 : a.unitId > b.unitId ? 1 : 0;
}

export function cellId(experimentId: number, unitId: string): string {
  return experimentId + "\u0000" + unitId;
}
