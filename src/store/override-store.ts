import { type Actor, recordExperimentChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import { type ExperimentRecord, experimentById, lockExperiment } from "./config-records.js";
import type { Database, Queryable } from "./database.js";

/** One override as ListOverrides shows it. */
export interface OverrideRow {
  experimentId: number;
  experimentKey: string;
  unitId: string;
  /** Undefined only if the variant is gone (variants with overrides are never removed). */
  variantKey: string | undefined;
  version: bigint;
  setAt: Date;
}

/** Where a page of ListOverrides starts: after this (experiment id, unit id). */
export interface OverrideCursor {
  experimentId: number;
  unitId: string;
}

/**
 * Overrides (SPEC.md "Stored assignments"): their own table, apart from stored assignments. Setting
 * one never changes the unit's stored assignment; clearing it makes the unit answer that again.
 * Every change moves the experiment to a new cache generation (caches hold what a unit is answered:
 * its override, else its stored assignment), so no cache layer answers the old value.
 */
export class OverrideStore {
  constructor(private readonly db: Database) {}

  /** Upserts overrides for many units; returns the experiment after the change. */
  async setOverrides(experimentKey: string, units: string[], variantIds: number[], actor: Actor): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, experimentKey);
      await tx.query(
        `INSERT INTO overrides (experiment_id, unit_id, variant, version)
         SELECT $1, u, v, $4 FROM unnest($2::text[], $3::smallint[]) AS t(u, v)
         ON CONFLICT (experiment_id, unit_id) DO UPDATE
           SET variant = excluded.variant, version = excluded.version, set_at = now()`,
        [exp.id, units, variantIds, (exp.version + 1n).toString()],
      );
      await bumpAfterChange(tx, exp.id);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, {
        overrides_set: { before: null, after: units.length },
        override_count: { before: exp.overrideCount, after: after.overrideCount },
      });
      return after;
    });
  }

  /** Removes overrides (of `units`, or all when undefined); returns the units cleared. Stored
   * assignments are not touched. */
  async clearOverrides(experimentKey: string, units: string[] | undefined, actor: Actor) {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, experimentKey);
      const { rows } = await tx.query<{ unit_id: string }>(
        units === undefined
          ? `DELETE FROM overrides WHERE experiment_id = $1 RETURNING unit_id`
          : `DELETE FROM overrides WHERE experiment_id = $1 AND unit_id = ANY($2::text[]) RETURNING unit_id`,
        units === undefined ? [exp.id] : [exp.id, units],
      );
      await bumpAfterChange(tx, exp.id);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, {
        overrides_cleared: { before: null, after: rows.length },
        override_count: { before: exp.overrideCount, after: after.overrideCount },
      });
      return { experiment: after, cleared: rows.map((r) => r.unit_id) };
    });
  }

  /** Up to `limit` overrides after `after`, ordered by experiment id then unit id; of one
   * experiment when `experimentId` is given. */
  async listOverrides(experimentId: number | undefined, after: OverrideCursor | undefined, limit: number): Promise<OverrideRow[]> {
    const { rows } = await this.db.query<{
      experiment_id: number;
      key: string;
      unit_id: string;
      variant_key: string | null;
      version: string;
      set_at: Date;
    }>(
      `SELECT o.experiment_id, e.key, o.unit_id, o.version::text AS version, o.set_at,
              (SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = o.variant) AS variant_key
         FROM overrides o JOIN experiments e ON e.id = o.experiment_id
        WHERE ($1::int IS NULL OR o.experiment_id = $1)
          AND ($2::int IS NULL OR (o.experiment_id, o.unit_id) > ($2::int, $3::text))
        ORDER BY o.experiment_id, o.unit_id
        LIMIT $4`,
      [experimentId ?? null, after?.experimentId ?? null, after?.unitId ?? null, limit],
    );
    return rows.map((r) => ({
      experimentId: r.experiment_id,
      experimentKey: r.key,
      unitId: r.unit_id,
      variantKey: r.variant_key ?? undefined,
      version: BigInt(r.version),
      setAt: r.set_at,
    }));
  }
}

/** After overrides changed: the experiment's override count, a new cache generation and version,
 * and the configuration change every server follows. */
async function bumpAfterChange(tx: Queryable, experimentId: number): Promise<void> {
  await tx.query(
    `UPDATE experiments
        SET override_count = (SELECT count(*) FROM overrides WHERE experiment_id = $1),
            cache_generation = cache_generation + 1, version = version + 1, updated_at = now()
      WHERE id = $1`,
    [experimentId],
  );
  await signalConfigChange(tx, [experimentId]);
}
