import type { JsonObject } from "@bufbuild/protobuf";
import type { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import type { NamespaceConfigInput } from "../engine/experiment-config.js";
import type { ExperimentState, VariantState } from "../engine/experiment-update.js";
import { failedPrecondition, notFound } from "../errors.js";
import type { Queryable } from "./database.js";

/** The configuration tables (experiments, namespaces) as records, and the reads every store of
 * them shares. */

export type VariantRecord = VariantState;

/** An experiment: what UpdateExperiment may change (ExperimentState) and what it may not. */
export interface ExperimentRecord extends ExperimentState {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  namespaceId: number | null;
  namespaceKey: string | null;
  segmentCount: number;
  overrideCount: number;
  cacheGeneration: number;
  version: bigint;
  createdAt: Date;
  updatedAt: Date;
  /** When it was archived; null when it is not. */
  archivedAt: Date | null;
}

/** A namespace: what the engine builds its configuration from, and when it was made. */
export interface NamespaceRecord extends Omit<NamespaceConfigInput, "allocations" | "defaultParams"> {
  /** null when it has none. */
  defaultParams: JsonObject | null;
  createdAt: Date;
  /** When it was archived; null when it is not. */
  archivedAt: Date | null;
  /** experiment key -> segments held */
  allocations: Map<string, number>;
  /** 1 when created, one more with every change of the namespace. */
  version: bigint;
}

const EXPERIMENT_COLUMNS = `e.id, e.key, e.salt, e.unit_type, e.hash_version, e.variants, e.rollout, e.status,
  e.default_variant, e.winner, e.tags, e.description, e.condition, e.namespace_id, n.key AS namespace_key,
  (SELECT count(*) FROM namespace_segments s WHERE s.experiment_id = e.id)::int AS segment_count,
  e.override_count, e.cache_generation, e.version::text AS version, e.created_at, e.updated_at, e.archived_at`;

/** `SELECT … FROM` every experiment column, for a query to finish with WHERE / ORDER BY. */
export const SELECT_EXPERIMENTS = `SELECT ${EXPERIMENT_COLUMNS} FROM experiments e LEFT JOIN namespaces n ON n.id = e.namespace_id`;

export interface ExperimentRow {
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
  condition: string;
  namespace_id: number | null;
  namespace_key: string | null;
  segment_count: number;
  override_count: number;
  cache_generation: number;
  version: string;
  created_at: Date;
  updated_at: Date;
  archived_at: Date | null;
}

export function toExperimentRecord(r: ExperimentRow): ExperimentRecord {
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
    condition: r.condition,
    namespaceId: r.namespace_id,
    namespaceKey: r.namespace_key,
    segmentCount: r.segment_count,
    overrideCount: r.override_count,
    cacheGeneration: r.cache_generation,
    version: BigInt(r.version),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    archivedAt: r.archived_at,
  };
}

export async function experimentById(q: Queryable, id: number): Promise<ExperimentRecord> {
  const { rows } = await q.query<ExperimentRow>(`${SELECT_EXPERIMENTS} WHERE e.id = $1`, [id]);
  return toExperimentRecord(rows[0]!);
}

/** The experiment `key`, locked for the transaction `tx` (FOR UPDATE); NOT_FOUND naming `field`.
 * An archived experiment changes no more (FAILED_PRECONDITION) unless `allowArchived`. */
export async function lockExperiment(
  tx: Queryable,
  key: string,
  field = "experiment_key",
  allowArchived = false,
): Promise<ExperimentRecord> {
  const { rows } = await tx.query<{ id: number }>(`SELECT id FROM experiments WHERE key = $1 FOR UPDATE`, [key]);
  if (rows.length === 0) throw notFound(`${field}: no experiment "${key}"`);
  const exp = await experimentById(tx, rows[0]!.id);
  if (exp.archivedAt && !allowArchived) {
    throw failedPrecondition(`${field}: experiment "${key}" is archived; unarchive it (UnarchiveExperiment) before changing it`);
  }
  return exp;
}

/** `SELECT … FROM namespaces` with every column a record needs. */
export const SELECT_NAMESPACES = `SELECT id, key, salt, unit_type, hash_version, segments, default_params, created_at, archived_at, version::text AS version FROM namespaces`;

export interface NamespaceRow {
  id: number;
  key: string;
  salt: string;
  unit_type: string;
  hash_version: number;
  segments: number;
  default_params: JsonObject | null;
  created_at: Date;
  archived_at: Date | null;
  version: string;
}

export function toNamespaceRecord(n: NamespaceRow, allocations: Map<string, number>): NamespaceRecord {
  return {
    id: n.id,
    key: n.key,
    salt: n.salt,
    unitType: n.unit_type,
    hashVersion: n.hash_version,
    segments: n.segments,
    defaultParams: n.default_params,
    createdAt: n.created_at,
    archivedAt: n.archived_at,
    allocations,
    version: BigInt(n.version),
  };
}

/** The namespace `key` with its allocations (locked FOR UPDATE with `lock`); NOT_FOUND naming
 * `field` otherwise. */
export async function namespaceByKey(q: Queryable, key: string, lock = false, field = "namespace_key"): Promise<NamespaceRecord> {
  const { rows } = await q.query<NamespaceRow>(`${SELECT_NAMESPACES} WHERE key = $1${lock ? " FOR UPDATE" : ""}`, [key]);
  if (rows.length === 0) throw notFound(`${field}: no namespace "${key}"`);
  const n = rows[0]!;
  const { rows: alloc } = await q.query<{ key: string; n: number }>(
    `SELECT e.key, count(*)::int AS n FROM namespace_segments s JOIN experiments e ON e.id = s.experiment_id
      WHERE s.namespace_id = $1 GROUP BY e.key ORDER BY e.key`,
    [n.id],
  );
  return toNamespaceRecord(n, new Map(alloc.map((a) => [a.key, a.n])));
}
