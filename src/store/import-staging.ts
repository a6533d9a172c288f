import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { type Actor, recordChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import { experimentById } from "./config-records.js";
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
  /** Rows stored, per experiment id (experiments with none stored may be missing). */
  importedPerExperiment: Map<number, number>;
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
   * right before the transaction commits: false rolls everything back (the caller went away).
   * `record` runs in that transaction, after the merge and before `wanted` (the audit log). */
  commit(
    overwrite: boolean,
    wanted?: () => boolean,
    record?: (tx: Queryable, result: ImportResult) => Promise<void>,
  ): Promise<ImportResult>;
  /** Leaves nothing behind. */
  abort(): Promise<void>;
}

/**
 * The merge of an import, inside the caller's transaction: staged rows (table `staging`, with
 * columns pos, experiment_id, unit_id, variant) into assignments. The first row of a unit (by
 * pos) counts. With `overwrite`, stored units are replaced (an override, kept apart, still answers
 * before the imported row until it is cleared), and the
 * experiments touched move to a new version, which the rows record, and a new cache generation.
 */
export async function mergeStaged(tx: Queryable, staging: string, overwrite: boolean): Promise<ImportResult> {
  const columns = `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)`;
  // The rows stored, counted per experiment.
  const counted = async (insert: string): Promise<Map<number, number>> => {
    const { rows } = await tx.query<{ experiment_id: number; n: number }>(
      `WITH ins AS (${insert} RETURNING experiment_id) SELECT experiment_id, count(*)::int AS n FROM ins GROUP BY experiment_id`,
    );
    return new Map(rows.map((r) => [r.experiment_id, r.n]));
  };
  let overwrittenExperiments: number[] = [];
  if (overwrite) {
    const { rows: ex } = await tx.query<{ id: number }>(
      `UPDATE experiments SET cache_generation = cache_generation + 1, version = version + 1, updated_at = now()
        WHERE id IN (SELECT DISTINCT experiment_id FROM ${staging}) RETURNING id`,
    );
    overwrittenExperiments = ex.map((e) => e.id);
    await signalConfigChange(tx, overwrittenExperiments);
    const importedPerExperiment = await counted(
      `${columns}
       SELECT DISTINCT ON (s.experiment_id, s.unit_id) s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
         FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
        ORDER BY s.experiment_id, s.unit_id, s.pos
       ON CONFLICT (experiment_id, unit_id) DO UPDATE
         SET variant = excluded.variant, version = excluded.version, source = excluded.source, assigned_at = now()`,
    );
    return { imported: total(importedPerExperiment), importedPerExperiment, overwrittenExperiments };
  }
  const importedPerExperiment = await counted(
    `${columns}
     SELECT s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
       FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
      ORDER BY s.pos
     ON CONFLICT DO NOTHING`,
  );
  return { imported: total(importedPerExperiment), importedPerExperiment, overwrittenExperiments };
}

const total = (counts: Map<number, number>): number => [...counts.values()].reduce((a, b) => a + b, 0);

/** Adds `more` into `into` (counts per experiment). */
export function addCounts(into: Map<number, number>, more: ReadonlyMap<number, number>): void {
  for (const [id, n] of more) into.set(id, (into.get(id) ?? 0) + n);
}

/**
 * Records an import in the audit log, inside its transaction: one change per experiment it had
 * valid rows for (`received`: rows per experiment id), with counts, never unit ids. An OVERWRITE
 * import made a new version of each experiment it touched.
 */
export async function recordImport(
  tx: Queryable,
  actor: Actor,
  overwrite: boolean,
  received: ReadonlyMap<number, number>,
  result: ImportResult,
): Promise<void> {
  const overwritten = new Set(result.overwrittenExperiments);
  for (const [id, rows] of received) {
    const after = await experimentById(tx, id);
    const moved = overwritten.has(id);
    await recordChange(tx, {
      actor,
      objectKind: "experiment",
      objectKey: after.key,
      versionBefore: moved ? after.version - 1n : after.version,
      versionAfter: after.version,
      fields: {
        policy: { before: null, after: overwrite ? "OVERWRITE" : "SKIP_EXISTING" },
        rows_received: { before: null, after: rows },
        rows_imported: { before: null, after: result.importedPerExperiment.get(id) ?? 0 },
      },
      newVersion: moved ? after : undefined,
    });
  }
}
