import { ExperimentStatus, type Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { ExperimentState } from "../engine/experiment-update.js";
import { aborted, failedPrecondition, notFound } from "../errors.js";
import { type Actor, experimentAtVersion, recordExperimentChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import {
  type ExperimentRecord,
  type ExperimentRow,
  experimentById,
  lockExperiment,
  SELECT_EXPERIMENTS,
  toExperimentRecord,
} from "./config-records.js";
import type { Database } from "./database.js";
import { createUnique } from "./unique-keys.js";

export type { ExperimentRecord, NamespaceRecord, VariantRecord } from "./config-records.js";

export type NewExperiment = Pick<
  ExperimentRecord,
  "key" | "salt" | "unitType" | "hashVersion" | "variants" | "rollout" | "status" | "defaultVariant" | "tags" | "description" | "condition"
>;

export interface VariantCount {
  variantId: number;
  source: Source;
  units: number;
}

/** Experiments: created, read, updated, archived (never deleted), and counted. */
export class ExperimentStore {
  constructor(private readonly db: Database) {}

  async createExperiment(x: NewExperiment, actor: Actor): Promise<ExperimentRecord> {
    return createUnique(this.db, "experiment", x.key, x.salt, async (tx) => {
      const { rows } = await tx.query<{ id: number }>(
        `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status, default_variant, tags, description, condition)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
        [
          x.key,
          x.salt,
          x.unitType,
          x.hashVersion,
          JSON.stringify(x.variants),
          x.rollout,
          x.status,
          x.defaultVariant,
          x.tags,
          x.description,
          x.condition,
        ],
      );
      const created = await experimentById(tx, rows[0]!.id);
      await recordExperimentChange(tx, actor, null, created);
      return created;
    });
  }

  /** The experiment `key` as it was at `version` (audit-log.ts): NOT_FOUND when it never had it. */
  async getExperimentAtVersion(key: string, version: bigint): Promise<ExperimentRecord> {
    return experimentAtVersion(this.db, await this.getExperiment(key), version);
  }

  async getExperiment(key: string): Promise<ExperimentRecord> {
    const { rows } = await this.db.query<ExperimentRow>(`${SELECT_EXPERIMENTS} WHERE e.key = $1`, [key]);
    if (rows.length === 0) throw notFound(`key: no experiment "${key}"`);
    return toExperimentRecord(rows[0]!);
  }

  /** Sorted by key; archived ones only when `includeArchived`. */
  async listExperiments(includeArchived = false): Promise<ExperimentRecord[]> {
    const { rows } = await this.db.query<ExperimentRow>(
      `${SELECT_EXPERIMENTS}${includeArchived ? "" : " WHERE e.archived_at IS NULL"} ORDER BY e.key`,
    );
    return rows.map(toExperimentRecord);
  }

  /**
   * Archives the experiment (README "Archiving"): only a DRAFT or STOPPED one (a RUNNING or PAUSED
   * one still answers its units: FAILED_PRECONDITION, stop it first). From then on it answers
   * UNKNOWN_EXPERIMENT, is left out of lists unless asked for, and changes no more; its key and
   * salt stay taken. Archiving an archived experiment changes nothing.
   */
  async archiveExperiment(key: string, actor: Actor): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, key, "key", true);
      if (exp.archivedAt) return exp;
      if (exp.status !== ExperimentStatus.DRAFT && exp.status !== ExperimentStatus.STOPPED) {
        throw failedPrecondition(
          `key: experiment "${key}" is ${ExperimentStatus[exp.status]}; only a DRAFT or STOPPED experiment is archived (stop it first, optionally with a winner)`,
        );
      }
      await tx.query(`UPDATE experiments SET archived_at = now(), version = version + 1, updated_at = now() WHERE id = $1`, [exp.id]);
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, { archived: { before: false, after: true } });
      return after;
    });
  }

  /** Serves an archived experiment again, as it was (its namespace must not be archived).
   * Unarchiving one that is not archived changes nothing. */
  async unarchiveExperiment(key: string, actor: Actor): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const exp = await lockExperiment(tx, key, "key", true);
      if (!exp.archivedAt) return exp;
      if (exp.namespaceId !== null) {
        const { rows } = await tx.query<{ archived: boolean }>(
          `SELECT archived_at IS NOT NULL AS archived FROM namespaces WHERE id = $1 FOR SHARE`,
          [exp.namespaceId],
        );
        if (rows[0]?.archived) {
          throw failedPrecondition(
            `key: experiment "${key}" belongs to namespace "${exp.namespaceKey}", which is archived: unarchive it first`,
          );
        }
      }
      await tx.query(`UPDATE experiments SET archived_at = NULL, version = version + 1, updated_at = now() WHERE id = $1`, [exp.id]);
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, { archived: { before: true, after: false } });
      return after;
    });
  }

  /**
   * Applies `patch(current)` if `expectedVersion` is the current version (else ABORTED), refusing
   * to remove a variant that has stored assignments (FAILED_PRECONDITION).
   */
  async updateExperiment(
    key: string,
    expectedVersion: bigint,
    patch: (current: ExperimentRecord) => ExperimentState,
    actor: Actor,
  ): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const current = await lockExperiment(tx, key);
      if (current.version !== expectedVersion) {
        throw aborted(`version: experiment "${key}" is at version ${current.version}, not ${expectedVersion}; read it again and retry`);
      }
      const next = patch(current);
      const kept = new Set(next.variants.map((v) => v.id));
      const removed = current.variants.filter((v) => !kept.has(v.id));
      if (removed.length > 0) {
        const { rows } = await tx.query<{ variant: number }>(
          `SELECT DISTINCT variant FROM assignments WHERE experiment_id = $1 AND variant = ANY($2::smallint[])
           UNION SELECT DISTINCT variant FROM overrides WHERE experiment_id = $1 AND variant = ANY($2::smallint[])`,
          [current.id, removed.map((v) => v.id)],
        );
        if (rows.length > 0) {
          const keys = removed.filter((v) => rows.some((r) => r.variant === v.id)).map((v) => v.key);
          throw failedPrecondition(`variants: cannot remove ${keys.join(", ")}: stored assignments or overrides use it`);
        }
      }
      await tx.query(
        `UPDATE experiments SET variants = $2, rollout = $3, status = $4, default_variant = $5, winner = $6,
                tags = $7, description = $8, condition = $9, version = version + 1, updated_at = now()
          WHERE id = $1`,
        [
          current.id,
          JSON.stringify(next.variants),
          next.rollout,
          next.status,
          next.defaultVariant,
          next.winner,
          next.tags,
          next.description,
          next.condition,
        ],
      );
      await signalConfigChange(tx);
      const after = await experimentById(tx, current.id);
      await recordExperimentChange(tx, actor, current, after);
      return after;
    });
  }

  /** Stored assignments of an experiment, per variant and source, and its overrides (source
   * OVERRIDE; they live apart, and a unit with an override may have a stored assignment too).
   * From the live counts (migrations/8_assignment-events.sql) plus the deltas of the outbox rows
   * not sequenced yet: exact as of this statement's snapshot, without counting rows. */
  async countAssignments(experimentId: number): Promise<VariantCount[]> {
    // Usually nothing waits in the outbox: the live counts alone are exact then (every writer of
    // outbox rows marks its transaction in assignment_outbox_tx, and a sequencer step removes both
    // at once, so in one snapshot no marked transaction means no outbox row). Asking that first
    // keeps the outbox out of the plan: after a large write the empty outbox stays bloated until
    // VACUUM, and a plan that merely names it is costed high enough for PostgreSQL to JIT-compile
    // it (14 ms a call measured at 10 million rows; the scan itself is never run).
    const { rows: fast } = await this.db.query<{
      waiting: boolean;
      variants: number[] | null;
      sources: number[] | null;
      ns: string[] | null;
    }>(
      `SELECT EXISTS (SELECT 1 FROM assignment_outbox_tx) AS waiting,
              array_agg(variant ORDER BY source, variant) AS variants, array_agg(source ORDER BY source, variant) AS sources,
              array_agg(n::text ORDER BY source, variant) AS ns
         FROM assignment_counts WHERE experiment_id = $1 AND n <> 0`,
      [experimentId],
    );
    const f = fast[0]!;
    if (!f.waiting)
      return (f.variants ?? []).map((variant, i) => ({ variantId: variant, source: f.sources![i] as Source, units: Number(f.ns![i]) }));
    // Something waits: the counts plus the deltas of the outbox rows, in one statement (one snapshot).
    const { rows } = await this.db.query<{ variant: number; source: number; n: string }>(
      `SELECT variant, source, sum(n)::text AS n FROM (
         SELECT variant, source, n FROM assignment_counts WHERE experiment_id = $1
         UNION ALL
         -- One pass over the outbox (a queue table, often bloated: see migration 16), both deltas of each row.
         SELECT d.variant, d.source, d.n FROM assignment_outbox o
           CROSS JOIN LATERAL (VALUES (o.variant, o.source, 1), (o.old_variant, o.old_source, -1)) d(variant, source, n)
          WHERE o.experiment_id = $1 AND d.variant IS NOT NULL
       ) c GROUP BY variant, source HAVING sum(n) <> 0 ORDER BY source, variant`,
      [experimentId],
    );
    return rows.map((r) => ({ variantId: r.variant, source: r.source as Source, units: Number(r.n) }));
  }
}
