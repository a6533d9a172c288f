import type { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { StoredAssignment } from "../engine/evaluate.js";
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

export interface InsertResult {
  stored: (StoredAssignment | undefined)[];
  won: boolean[];
}

/**
 * Stored assignments in PostgreSQL, read and written in batches: one statement per call,
 * never one per row.
 */
export class AssignmentStore {
  constructor(private readonly db: Database) {}

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
   * Stores new assignments with one INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING, then
   * reads back the cells that lost a race to another writer. Positional: `stored[i]` is what is
   * stored for rows[i] now, its own row (`won[i]`) or the winner's (undefined in the rare case
   * where the winner's row was removed again, by ClearOverrides, before it could be read).
   * Rows must not repeat a cell.
   */
  async insert(rows: readonly NewAssignment[]): Promise<InsertResult> {
    if (rows.length === 0) return { stored: [], won: [] };
    // Every writer inserts in the same order, so two racing statements wait on each other
    // instead of deadlocking.
    const order = rows.map((_, i) => i).sort((a, b) => compareCells(rows[a], rows[b]));
    const e = new Array<number>(rows.length);
    const u = new Array<string>(rows.length);
    const v = new Array<number>(rows.length);
    const ver = new Array<string>(rows.length);
    const s = new Array<number>(rows.length);
    order.forEach((idx, k) => {
      const r = rows[idx];
      e[k] = r.experimentId;
      u[k] = r.unitId;
      v[k] = r.variantId;
      ver[k] = r.version.toString();
      s[k] = r.source;
    });
    const { rows: inserted } = await this.db.query<{ e: number; u: string }>(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
       SELECT * FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[], $5::smallint[])
       ON CONFLICT DO NOTHING
       RETURNING experiment_id AS e, unit_id AS u`,
      [e, u, v, ver, s],
    );
    const stored: (StoredAssignment | undefined)[] = rows.map((r) => ({ variantId: r.variantId, source: r.source }));
    const won = new Array<boolean>(rows.length).fill(true);
    if (inserted.length === rows.length) return { stored, won };
    const winners = new Set(inserted.map((r) => cellId(r.e, r.u)));
    const lost = rows.map((_, i) => i).filter((i) => !winners.has(cellId(rows[i].experimentId, rows[i].unitId)));
    const current = await this.read(lost.map((i) => rows[i]));
    lost.forEach((i, k) => {
      stored[i] = current[k];
      won[i] = false;
    });
    return { stored, won };
  }
}

function compareCells(a: CellKey, b: CellKey): number {
  if (a.experimentId !== b.experimentId) return a.experimentId - b.experimentId;
  return a.unitId < b.unitId ? -1 : a.unitId > b.unitId ? 1 : 0;
}

export function cellId(experimentId: number, unitId: string): string {
  return experimentId + "\u0000" + unitId;
}
