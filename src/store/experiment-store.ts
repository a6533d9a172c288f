import type { JsonObject } from "@bufbuild/protobuf";
import { type ExperimentStatus, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { hashV1 } from "../engine/hash.js";
import { aborted, alreadyExists, failedPrecondition, notFound, resourceExhausted } from "../errors.js";
import { readConfigEpoch, signalConfigChange } from "./config-change.js";
import type { Database, Queryable } from "./database.js";
import { isUniqueViolation } from "./pg-errors.js";

export interface VariantRecord {
  id: number;
  key: string;
  weight: number;
  params?: JsonObject;
}

export interface ExperimentRecord {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  variants: VariantRecord[];
  rollout: number;
  status: ExperimentStatus;
  defaultVariant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
  namespaceId: number | null;
  namespaceKey: string | null;
  segmentCount: number;
  overrideCount: number;
  cacheGeneration: number;
  version: bigint;
  createdAt: Date;
  updatedAt: Date;
}

export interface NamespaceRecord {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  segments: number;
  createdAt: Date;
  /** experiment key -> segments held */
  allocations: Map<string, number>;
}

export interface NewExperiment {
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  variants: VariantRecord[];
  rollout: number;
  status: ExperimentStatus;
  defaultVariant: string | null;
  tags: string[];
  description: string;
}

/** The fields UpdateExperiment may change. */
export interface ExperimentPatch {
  variants: VariantRecord[];
  rollout: number;
  status: ExperimentStatus;
  defaultVariant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
}

/** Everything an evaluating server keeps in memory, read in one go. */
export interface ConfigSnapshot {
  epoch: bigint;
  experiments: ExperimentRecord[];
  namespaces: NamespaceRecord[];
  /** namespace id -> (segment -> experiment id) */
  segments: Map<number, Array<[number, number]>>;
}

export interface VariantCount {
  variantId: number;
  source: Source;
  units: number;
}

const EXPERIMENT_COLUMNS = `e.id, e.key, e.salt, e.unit_type, e.hash_version, e.variants, e.rollout, e.status,
  e.default_variant, e.winner, e.tags, e.description, e.namespace_id, n.key AS namespace_key,
  (SELECT count(*) FROM namespace_segments s WHERE s.experiment_id = e.id)::int AS segment_count,
  e.override_count, e.cache_generation, e.version::text AS version, e.created_at, e.updated_at`;

const EXPERIMENT_FROM = `experiments e LEFT JOIN namespaces n ON n.id = e.namespace_id`;

interface ExperimentRow {
  id: number;
  key: string;
  salt: string;
  unit_type: string;
  hash_version: number;
  variants: VariantRecord[];
  rollout: number;
  status: number;
  default_variant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
  namespace_id: number | null;
  namespace_key: string | null;
  segment_count: number;
  override_count: number;
  cache_generation: number;
  version: string;
  created_at: Date;
  updated_at: Date;
}

function toExperiment(r: ExperimentRow): ExperimentRecord {
  return {
    id: r.id,
    key: r.key,
    salt: r.salt,
    unitType: r.unit_type,
    hashVersion: r.hash_version,
    variants: r.variants,
    rollout: r.rollout,
    status: r.status as ExperimentStatus,
    defaultVariant: r.default_variant,
    winner: r.winner,
    tags: r.tags,
    description: r.description,
    namespaceId: r.namespace_id,
    namespaceKey: r.namespace_key,
    segmentCount: r.segment_count,
    overrideCount: r.override_count,
    cacheGeneration: r.cache_generation,
    version: BigInt(r.version),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Experiments, namespaces, segments and overrides: the configuration side of the store. */
export class ExperimentStore {
  constructor(private readonly db: Database) {}

  private async claimSalt(tx: Queryable, salt: string, owner: string): Promise<void> {
    const { rows } = await tx.query<{ owner: string }>(
      `INSERT INTO salts (salt, owner) VALUES ($1, $2) ON CONFLICT (salt) DO NOTHING RETURNING owner`,
      [salt, owner],
    );
    if (rows.length === 0) {
      const { rows: prev } = await tx.query<{ owner: string }>(`SELECT owner FROM salts WHERE salt = $1`, [salt]);
      throw alreadyExists(
        `salt: already used by ${prev[0]?.owner ?? "another experiment or namespace"}; salts must be unique across experiments and namespaces`,
      );
    }
  }

  async createExperiment(x: NewExperiment): Promise<ExperimentRecord> {
    try {
      return await this.db.transaction(async (tx) => {
        const exists = await tx.query(`SELECT 1 FROM experiments WHERE key = $1`, [x.key]);
        if (exists.rowCount > 0) throw alreadyExists(`key: experiment "${x.key}" already exists`);
        await this.claimSalt(tx, x.salt, `experiment:${x.key}`);
        const { rows } = await tx.query<{ id: number }>(
          `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status, default_variant, tags, description)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
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
          ],
        );
        await signalConfigChange(tx);
        return this.getExperimentById(tx, rows[0].id);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw alreadyExists(`key: experiment "${x.key}" already exists`);
      throw err;
    }
  }

  private async getExperimentById(q: Queryable, id: number): Promise<ExperimentRecord> {
    const { rows } = await q.query<ExperimentRow>(`SELECT ${EXPERIMENT_COLUMNS} FROM ${EXPERIMENT_FROM} WHERE e.id = $1`, [id]);
    return toExperiment(rows[0]);
  }

  async getExperiment(key: string): Promise<ExperimentRecord> {
    const { rows } = await this.db.query<ExperimentRow>(`SELECT ${EXPERIMENT_COLUMNS} FROM ${EXPERIMENT_FROM} WHERE e.key = $1`, [key]);
    if (rows.length === 0) throw notFound(`key: no experiment "${key}"`);
    return toExperiment(rows[0]);
  }

  async listExperiments(): Promise<ExperimentRecord[]> {
    const { rows } = await this.db.query<ExperimentRow>(`SELECT ${EXPERIMENT_COLUMNS} FROM ${EXPERIMENT_FROM} ORDER BY e.key`);
    return rows.map(toExperiment);
  }

  /**
   * Applies `patch(current)` if `expectedVersion` is the current version (else ABORTED), refusing
   * to remove a variant that has stored assignments (FAILED_PRECONDITION).
   */
  async updateExperiment(
    key: string,
    expectedVersion: bigint,
    patch: (current: ExperimentRecord) => ExperimentPatch,
  ): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const current = await this.lockExperiment(tx, key);
      if (current.version !== expectedVersion) {
        throw aborted(`version: experiment "${key}" is at version ${current.version}, not ${expectedVersion}; read it again and retry`);
      }
      const next = patch(current);
      const kept = new Set(next.variants.map((v) => v.id));
      const removed = current.variants.filter((v) => !kept.has(v.id));
      if (removed.length > 0) {
        const { rows } = await tx.query<{ variant: number }>(
          `SELECT DISTINCT variant FROM assignments WHERE experiment_id = $1 AND variant = ANY($2::smallint[])`,
          [current.id, removed.map((v) => v.id)],
        );
        if (rows.length > 0) {
          const keys = removed.filter((v) => rows.some((r) => r.variant === v.id)).map((v) => v.key);
          throw failedPrecondition(`variants: cannot remove ${keys.join(", ")}: stored assignments use it`);
        }
      }
      await tx.query(
        `UPDATE experiments SET variants = $2, rollout = $3, status = $4, default_variant = $5, winner = $6,
                tags = $7, description = $8, version = version + 1, updated_at = now()
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
        ],
      );
      await signalConfigChange(tx);
      return this.getExperimentById(tx, current.id);
    });
  }

  private async lockExperiment(tx: Queryable, key: string): Promise<ExperimentRecord> {
    const { rows } = await tx.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1 FOR UPDATE`, [key]);
    if (rows.length === 0) throw notFound(`experiment_key: no experiment "${key}"`);
    return this.getExperimentById(tx, rows[0].id);
  }

  async createNamespace(key: string, salt: string, unitType: string, segments: number): Promise<NamespaceRecord> {
    try {
      return await this.db.transaction(async (tx) => {
        const exists = await tx.query(`SELECT 1 FROM namespaces WHERE key = $1`, [key]);
        if (exists.rowCount > 0) throw alreadyExists(`key: namespace "${key}" already exists`);
        await this.claimSalt(tx, salt, `namespace:${key}`);
        await tx.query(`INSERT INTO namespaces (key, salt, unit_type, segments) VALUES ($1, $2, $3, $4)`, [key, salt, unitType, segments]);
        await signalConfigChange(tx);
        return this.namespaceByKey(tx, key);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw alreadyExists(`key: namespace "${key}" already exists`);
      throw err;
    }
  }

  private async namespaceByKey(q: Queryable, key: string, lock = false): Promise<NamespaceRecord> {
    const { rows } = await q.query<{ id: number; key: string; salt: string; unit_type: string; segments: number; created_at: Date }>(
      `SELECT id, key, salt, unit_type, segments, created_at FROM namespaces WHERE key = $1${lock ? " FOR UPDATE" : ""}`,
      [key],
    );
    if (rows.length === 0) throw notFound(`namespace_key: no namespace "${key}"`);
    const n = rows[0];
    const { rows: alloc } = await q.query<{ key: string; n: number }>(
      `SELECT e.key, count(*)::int AS n FROM namespace_segments s JOIN experiments e ON e.id = s.experiment_id
        WHERE s.namespace_id = $1 GROUP BY e.key ORDER BY e.key`,
      [n.id],
    );
    return {
      id: n.id,
      key: n.key,
      salt: n.salt,
      unitType: n.unit_type,
      segments: n.segments,
      createdAt: n.created_at,
      allocations: new Map(alloc.map((a) => [a.key, a.n])),
    };
  }

  async getNamespace(key: string): Promise<NamespaceRecord> {
    return this.namespaceByKey(this.db, key);
  }

  async listNamespaces(): Promise<NamespaceRecord[]> {
    const { rows } = await this.db.query<{ key: string }>(`SELECT key FROM namespaces ORDER BY key`);
    return Promise.all(rows.map((r) => this.namespaceByKey(this.db, r.key)));
  }

  /**
   * Gives the experiment `count` more free segments, spread pseudo-randomly over the segment
   * space, and stores them. Nothing else moves.
   */
  async allocateSegments(namespaceKey: string, experimentKey: string, count: number) {
    return this.db.transaction(async (tx) => {
      const ns = await this.namespaceByKey(tx, namespaceKey, true);
      const exp = await this.lockExperiment(tx, experimentKey);
      if (exp.namespaceId !== null && exp.namespaceId !== ns.id) {
        throw failedPrecondition(`experiment_key: experiment "${experimentKey}" already belongs to namespace "${exp.namespaceKey}"`);
      }
      if (exp.unitType !== ns.unitType) {
        throw failedPrecondition(
          `experiment_key: experiment "${experimentKey}" has unit type ${exp.unitType}, namespace "${namespaceKey}" has ${ns.unitType}`,
        );
      }
      const { rows: taken } = await tx.query<{ segment: number }>(`SELECT segment FROM namespace_segments WHERE namespace_id = $1`, [
        ns.id,
      ]);
      const used = new Uint8Array(ns.segments);
      for (const t of taken) used[t.segment] = 1;
      const free: number[] = [];
      for (let s = 0; s < ns.segments; s++) if (!used[s]) free.push(s);
      if (count > free.length) {
        throw resourceExhausted(`segments: asked for ${count} segments, namespace "${namespaceKey}" has ${free.length} free`);
      }
      // A pseudo-random but reproducible pick: free segments ordered by a hash of the pair.
      const rank = new Map(free.map((s) => [s, hashV1(`${ns.salt}:${exp.key}:${s}`)]));
      free.sort((a, b) => rank.get(a)! - rank.get(b)! || a - b);
      const picked = free.slice(0, count);
      await tx.query(`INSERT INTO namespace_segments (namespace_id, segment, experiment_id) SELECT $1, s, $2 FROM unnest($3::int[]) AS s`, [
        ns.id,
        exp.id,
        picked,
      ]);
      await tx.query(`UPDATE experiments SET namespace_id = $2, version = version + 1, updated_at = now() WHERE id = $1`, [exp.id, ns.id]);
      await signalConfigChange(tx);
      return { namespace: await this.namespaceByKey(tx, namespaceKey), experiment: await this.getExperimentById(tx, exp.id) };
    });
  }

  /** Frees every segment the experiment holds; it stays in the namespace, holding none, so it never
   * overlaps the namespace's other experiments. */
  async releaseSegments(namespaceKey: string, experimentKey: string) {
    return this.db.transaction(async (tx) => {
      const ns = await this.namespaceByKey(tx, namespaceKey, true);
      const exp = await this.lockExperiment(tx, experimentKey);
      if (exp.namespaceId !== ns.id) {
        throw failedPrecondition(`experiment_key: experiment "${experimentKey}" is not in namespace "${namespaceKey}"`);
      }
      const { rowCount } = await tx.query(`DELETE FROM namespace_segments WHERE namespace_id = $1 AND experiment_id = $2`, [ns.id, exp.id]);
      await tx.query(`UPDATE experiments SET version = version + 1, updated_at = now() WHERE id = $1`, [exp.id]);
      await signalConfigChange(tx);
      return {
        namespace: await this.namespaceByKey(tx, namespaceKey),
        experiment: await this.getExperimentById(tx, exp.id),
        released: rowCount,
      };
    });
  }

  /** Upserts overrides (source OVERRIDE) for many units; returns the experiment after the change. */
  async setOverrides(experimentKey: string, units: string[], variantIds: number[]): Promise<ExperimentRecord> {
    return this.db.transaction(async (tx) => {
      const exp = await this.lockExperiment(tx, experimentKey);
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
      return this.getExperimentById(tx, exp.id);
    });
  }

  /** Removes overrides (of `units`, or all when undefined); returns the units cleared. */
  async clearOverrides(experimentKey: string, units: string[] | undefined) {
    return this.db.transaction(async (tx) => {
      const exp = await this.lockExperiment(tx, experimentKey);
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
      return { experiment: await this.getExperimentById(tx, exp.id), cleared: rows.map((r) => r.unit_id) };
    });
  }

  async countAssignments(experimentId: number): Promise<VariantCount[]> {
    const { rows } = await this.db.query<{ variant: number; source: number; n: string }>(
      `SELECT variant, source, count(*) AS n FROM assignments WHERE experiment_id = $1 GROUP BY variant, source`,
      [experimentId],
    );
    return rows.map((r) => ({ variantId: r.variant, source: r.source as Source, units: Number(r.n) }));
  }

  /** A random id made when the schema was created; cache keys carry it. */
  async installationId(): Promise<string> {
    const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM installation`);
    return rows[0].id;
  }

  async configEpoch(): Promise<bigint> {
    return readConfigEpoch(this.db);
  }

  /** The whole configuration, read in one REPEATABLE READ transaction so that it is consistent. */
  async loadConfig(): Promise<ConfigSnapshot> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY`);
      const epoch = await readConfigEpoch(tx);
      const { rows: ex } = await tx.query<ExperimentRow>(`SELECT ${EXPERIMENT_COLUMNS} FROM ${EXPERIMENT_FROM} ORDER BY e.key`);
      const { rows: ns } = await tx.query<{ id: number; key: string; salt: string; unit_type: string; segments: number; created_at: Date }>(
        `SELECT id, key, salt, unit_type, segments, created_at FROM namespaces ORDER BY key`,
      );
      const { rows: seg } = await tx.query<{ namespace_id: number; segment: number; experiment_id: number }>(
        `SELECT namespace_id, segment, experiment_id FROM namespace_segments`,
      );
      const segments = new Map<number, Array<[number, number]>>();
      for (const s of seg) {
        let list = segments.get(s.namespace_id);
        if (!list) segments.set(s.namespace_id, (list = []));
        list.push([s.segment, s.experiment_id]);
      }
      return {
        epoch,
        experiments: ex.map(toExperiment),
        namespaces: ns.map((n) => ({
          id: n.id,
          key: n.key,
          salt: n.salt,
          unitType: n.unit_type,
          segments: n.segments,
          createdAt: n.created_at,
          allocations: new Map(),
        })),
        segments,
      };
    });
  }
}
