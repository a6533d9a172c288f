import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { signalConfigChange } from "./config-change.js";
import type { Database } from "./database.js";

export interface ErasureResult {
  /** Stored assignments removed (overrides not included). */
  assignments: number;
  /** Overrides removed. */
  overrides: number;
  /** Experiments that held any of them. */
  experiments: number;
}

/**
 * Erasure of units (a data-protection request): their stored assignments and overrides in every
 * experiment of their unit type, in one transaction. Every experiment that held any moves to a new
 * cache generation (so no cache layer answers them again) and is named in the configuration
 * NOTIFY (so every server stops answering its cached values before it has reloaded).
 */
export class ErasureStore {
  constructor(private readonly db: Database) {}

  async eraseUnits(unitType: string, unitIds: readonly string[]): Promise<ErasureResult> {
    return this.db.transaction(async (tx) => {
      // The experiments holding any of the units, locked in id order (as every writer of overrides
      // locks its experiment before its rows, and in one order, so that nothing deadlocks).
      const { rows: held } = await tx.query<{ id: number }>(
        `SELECT id FROM experiments WHERE unit_type = $1
            AND id IN (SELECT experiment_id FROM assignments WHERE unit_id = ANY($2::text[]))
          ORDER BY id FOR UPDATE`,
        [unitType, unitIds],
      );
      if (held.length === 0) return { assignments: 0, overrides: 0, experiments: 0 };
      const ids = held.map((r) => r.id);
      const { rows } = await tx.query<{ experiment_id: number; overrides: number; assignments: number }>(
        `WITH gone AS (
           DELETE FROM assignments WHERE experiment_id = ANY($1::int[]) AND unit_id = ANY($2::text[])
           RETURNING experiment_id, source
         )
         SELECT experiment_id,
                (count(*) FILTER (WHERE source = ${Source.OVERRIDE}))::int AS overrides,
                (count(*) FILTER (WHERE source <> ${Source.OVERRIDE}))::int AS assignments
           FROM gone GROUP BY experiment_id`,
        [ids, unitIds],
      );
      await tx.query(
        `UPDATE experiments e SET override_count = e.override_count - g.overrides, cache_generation = e.cache_generation + 1
           FROM unnest($1::int[], $2::int[]) AS g(id, overrides) WHERE e.id = g.id`,
        [rows.map((r) => r.experiment_id), rows.map((r) => r.overrides)],
      );
      await signalConfigChange(
        tx,
        rows.map((r) => r.experiment_id),
      );
      return {
        assignments: rows.reduce((n, r) => n + r.assignments, 0),
        overrides: rows.reduce((n, r) => n + r.overrides, 0),
        experiments: rows.length,
      };
    });
  }
}
