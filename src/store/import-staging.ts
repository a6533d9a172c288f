import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { signalConfigChange } from "./config-change.js";
import type { Queryable } from "./database.js";

/**
 * Rows ready for staging, in columns (one import message's worth, in import order): ids already
 * resolved and checked. Columns rather than an object per row: an import of millions of rows
 * would otherwise spend much of its time allocating and collecting them.
 */
export interface StagedRows {
  readonly experimentIds: Int32Array;
  readonly unitIds: readonly string[];
  readonly variantIds: Int32Array;
}

export interface ImportResult {
  imported: number;
  /** Experiments whose stored values were replaced (OVERWRITE): their caches must move on. */
  overwrittenExperiments: number[];
}

/** An import in progress: rows are staged, then merged into assignments all at once, or not at all. */
export interface ImportStaging {
  /** Takes rows, in import order; resolves when more can be taken (backpressure). `overwrite` is
   * the import's policy (known from its first message), the same on every call. */
  write(rows: StagedRows, overwrite: boolean): Promise<void>;
  /** Stores every row taken, in one transaction: the first row of a unit counts; existing units
   * are skipped, or replaced with `overwrite` (overrides never are). `wanted` is asked last,
   * right before the transaction commits: false rolls everything back (the caller went away). */
  commit(overwrite: boolean, wanted?: () => boolean): Promise<ImportResult>;
  /** Leaves nothing behind. */
  abort(): Promise<void>;
}

/**
 * The merge of an import, inside the caller's transaction: staged rows (table `staging`, with
 * columns pos, experiment_id, unit_id, variant) into assignments. The first row of a unit (by
 * pos) counts. With `overwrite`, stored units are replaced (except overrides), and the
 * experiments touched move to a new version, which the rows record, and a new cache generation.
 */
export async function mergeStaged(tx: Queryable, staging: string, overwrite: boolean): Promise<ImportResult> {
  const columns = `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)`;
  let overwrittenExperiments: number[] = [];
  if (overwrite) {
    const { rows: ex } = await tx.query<{ id: number }>(
      `UPDATE experiments SET cache_generation = cache_generation + 1, version = version + 1, updated_at = now()
        WHERE id IN (SELECT DISTINCT experiment_id FROM ${staging}) RETURNING id`,
    );
    overwrittenExperiments = ex.map((e) => e.id);
    await signalConfigChange(tx);
    const { rowCount } = await tx.query(
      `${columns}
       SELECT DISTINCT ON (s.experiment_id, s.unit_id) s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
         FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
        ORDER BY s.experiment_id, s.unit_id, s.pos
       ON CONFLICT (experiment_id, unit_id) DO UPDATE
         SET variant = excluded.variant, version = excluded.version, source = excluded.source, assigned_at = now()
         WHERE assignments.source <> ${Source.OVERRIDE}`,
    );
    return { imported: rowCount, overwrittenExperiments };
  }
  const { rowCount } = await tx.query(
    `${columns}
     SELECT s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
       FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
      ORDER BY s.pos
     ON CONFLICT DO NOTHING`,
  );
  return { imported: rowCount, overwrittenExperiments };
}
