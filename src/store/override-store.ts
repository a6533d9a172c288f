import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { type Actor, recordExperimentChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import { type ExperimentRecord, experimentById, lockExperiment } from "./config-records.js";
import type { Database } from "./database.js";

/**
 * Overrides: stored assignments of source OVERRIDE, set and cleared per unit. Every change moves
 * the experiment to a new cache generation, so no cache layer answers the old value.
 */
export class OverrideStore {
  constructor(private readonly db: Database) {}

  /** Upserts overrides for many units; returns the experiment after the change. */
  async setOverrides(experimentKey: string, units: string[], variantIds: number[], actor: Actor): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, experimentKey);
      const { rows } = await tx.query<{ was_override: boolean }>(
        `WITH prev AS (
           SELECT unit_id FROM assignments WHERE experiment_id = $1 AND unit_id = ANY($2::text[]) AND source = ${Source.OVERRIDE}
         )
         INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT $1, u, v, $4, ${Source.OVERRIDE} FROM unnest($2::text[], $3::smallint[]) AS t(u, v)
         ON CONFLICT (experiment_id, unit_id) DO UPDATE
           SET variant = excluded.variant, version = excluded.version, source = excluded.source, assigned_at = now()
         RETURNING (unit_id IN (SELECT unit_id FROM prev)) AS was_override`,
        [exp.id, units, variantIds, (exp.version + 1n).toString()],
      );
      const added = rows.filter((r) => !r.was_override).length;
      await tx.query(
        `UPDATE experiments SET override_count = override_count + $2, cache_generation = cache_generation + 1, version = version + 1, updated_at = now() WHERE id = $1`,
        [exp.id, added],
      );
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, {
        overrides_set: { before: null, after: units.length },
        override_count: { before: exp.overrideCount, after: after.overrideCount },
      });
      return after;
    });
  }

  /** Removes overrides (of `units`, or all when undefined); returns the units cleared. */
  async clearOverrides(experimentKey: string, units: string[] | undefined, actor: Actor) {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, experimentKey);
      const { rows } = await tx.query<{ unit_id: string }>(
        units === undefined
          ? `DELETE FROM assignments WHERE experiment_id = $1 AND source = ${Source.OVERRIDE} RETURNING unit_id`
          : `DELETE FROM assignments WHERE experiment_id = $1 AND source = ${Source.OVERRIDE} AND unit_id = ANY($2::text[]) RETURNING unit_id`,
        units === undefined ? [exp.id] : [exp.id, units],
      );
      await tx.query(
        `UPDATE experiments SET override_count = override_count - $2, cache_generation = cache_generation + 1, version = version + 1, updated_at = now() WHERE id = $1`,
        [exp.id, rows.length],
      );
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, {
        overrides_cleared: { before: null, after: rows.length },
        override_count: { before: exp.overrideCount, after: after.overrideCount },
      });
      return { experiment: after, cleared: rows.map((r) => r.unit_id) };
    });
  }
}
