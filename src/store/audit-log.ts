import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { invalidArgument, notFound } from "../errors.js";
import type { ExperimentRecord, VariantRecord } from "./config-records.js";
import type { Queryable } from "./database.js";

/**
 * The audit log (migrations/3_audit-log.sql): one row per successful administrative change, and
 * every version each experiment had.
 *
 * A store that changes something calls `recordChange(tx, change)` with the transaction of the
 * change itself, after the change and before it commits: a change that fails (or rolls back)
 * leaves no row, and a row stands for a committed change. Refused calls never get this far.
 */

/** Who made a change and through which RPC: the call's token (name and role) and method. */
export interface Actor {
  readonly tokenName: string;
  readonly tokenRole: string;
  /** The RPC's name in the proto, e.g. `UpdateExperiment`. */
  readonly rpc: string;
}

/** What a change is of: holdouts, cohorts, jobs (keyed by id) and schedules have no versions. */
export type ObjectKind = "experiment" | "namespace" | "holdout" | "cohort" | "job" | "schedule";

/** A JSON value as it goes into the log. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** field -> its value before and after the change (null when it had none, or for counts). */
export type FieldChanges = Record<string, { before: JsonValue; after: JsonValue }>;

export interface Change {
  actor: Actor;
  objectKind: ObjectKind;
  objectKey: string;
  /** The experiment's version before the change (null when created, or for a namespace). */
  versionBefore: bigint | null;
  /** The version after it (null for a namespace). */
  versionAfter: bigint | null;
  fields: FieldChanges;
  /** The experiment as it is after the change, when the change made a new version of it: kept as
   * that version for GetExperiment at a past version. */
  newVersion?: ExperimentRecord;
}

/** Writes one change into the log, inside `tx` (the transaction of the change). */
export async function recordChange(tx: Queryable, change: Change): Promise<void> {
  await tx.query(
    `INSERT INTO audit_log (token_name, token_role, rpc, object_kind, object_key, version_before, version_after, changes)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      change.actor.tokenName,
      change.actor.tokenRole,
      change.actor.rpc,
      change.objectKind,
      change.objectKey,
      change.versionBefore?.toString() ?? null,
      change.versionAfter?.toString() ?? null,
      JSON.stringify(change.fields),
    ],
  );
  if (change.newVersion) {
    const e = change.newVersion;
    await tx.query(`INSERT INTO experiment_versions (experiment_id, version, snapshot) VALUES ($1, $2, $3)`, [
      e.id,
      e.version.toString(),
      JSON.stringify(experimentSnapshot(e)),
    ]);
  }
}

/** Records an experiment's change from its state before (null: created) to after, with every
 * field that differs; a new version of it is kept when the version moved. */
export async function recordExperimentChange(
  tx: Queryable,
  actor: Actor,
  before: ExperimentRecord | null,
  after: ExperimentRecord,
  extra: FieldChanges = {},
): Promise<void> {
  await recordChange(tx, {
    actor,
    objectKind: "experiment",
    objectKey: after.key,
    versionBefore: before?.version ?? null,
    versionAfter: after.version,
    fields: { ...experimentFieldChanges(before, after), ...extra },
    newVersion: before === null || before.version !== after.version ? after : undefined,
  });
}

/** What GetExperiment answers of an experiment, as JSON: the fields a version is made of. A new
 * field of an experiment goes here (so updates record it) and into ExperimentSnapshot (so past
 * versions show it rather than the current value). */
interface ExperimentFields {
  key: string;
  salt: string;
  unit_type: string;
  hash_version: number;
  variants: VariantRecord[];
  rollout: number;
  status: string;
  default_variant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
  condition: string;
  namespace: string | null;
  segments: number;
}

/** The fields only a creation sets (an experiment's identity never changes). */
const IDENTITY: ReadonlySet<string> = new Set(["key", "salt", "unit_type", "hash_version"]);

function experimentFields(e: ExperimentRecord): ExperimentFields {
  return {
    key: e.key,
    salt: e.salt,
    unit_type: e.unitType,
    hash_version: e.hashVersion,
    variants: e.variants,
    rollout: e.rollout,
    status: ExperimentStatus[e.status] ?? String(e.status),
    default_variant: e.defaultVariant,
    winner: e.winner,
    tags: e.tags,
    description: e.description,
    condition: e.condition,
    namespace: e.namespaceKey,
    segments: e.segmentCount,
  };
}

/** The fields (proto names) whose values differ between `before` and `after`; every field, from
 * null, when `before` is null (a creation). Variants are compared whole, params included. */
export function experimentFieldChanges(before: ExperimentRecord | null, after: ExperimentRecord): FieldChanges {
  const a = experimentFields(after) as unknown as Record<string, JsonValue>;
  const b = before ? (experimentFields(before) as unknown as Record<string, JsonValue>) : null;
  const out: FieldChanges = {};
  for (const [field, value] of Object.entries(a)) {
    if (b === null) out[field] = { before: null, after: value };
    else if (!IDENTITY.has(field) && canonicalJson(b[field]!) !== canonicalJson(value)) out[field] = { before: b[field]!, after: value };
  }
  return out;
}

/** JSON with object keys sorted: equal values give equal text whatever order jsonb kept. */
export function canonicalJson(v: JsonValue): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0)))
      : x,
  );
}

/** A version of an experiment as kept in experiment_versions (also written by the migration for
 * experiments older than the log). */
interface ExperimentSnapshot {
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  variants: VariantRecord[];
  rollout: number;
  status: number;
  defaultVariant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
  /** Absent in versions kept before targeting existed: they had none. */
  condition?: string;
  namespaceKey: string | null;
  segmentCount: number;
  version: string;
  createdAt: string;
  updatedAt: string;
}

function experimentSnapshot(e: ExperimentRecord): ExperimentSnapshot {
  return {
    key: e.key,
    salt: e.salt,
    unitType: e.unitType,
    hashVersion: e.hashVersion,
    variants: e.variants,
    rollout: e.rollout,
    status: e.status,
    defaultVariant: e.defaultVariant,
    winner: e.winner,
    tags: e.tags,
    description: e.description,
    condition: e.condition,
    namespaceKey: e.namespaceKey,
    segmentCount: e.segmentCount,
    version: e.version.toString(),
    createdAt: e.createdAt.toISOString(),
    updatedAt: e.updatedAt.toISOString(),
  };
}

/**
 * The experiment `current` as it was at `version`: NOT_FOUND when it never had that version, or
 * when that version is older than the audit log (made before the log existed on this database).
 */
export async function experimentAtVersion(q: Queryable, current: ExperimentRecord, version: bigint): Promise<ExperimentRecord> {
  if (version === current.version) return current;
  if (version < 1n || version > current.version) {
    throw notFound(`version: experiment "${current.key}" never had version ${version} (its versions are 1 to ${current.version})`);
  }
  const { rows } = await q.query<{ snapshot: ExperimentSnapshot }>(
    `SELECT snapshot FROM experiment_versions WHERE experiment_id = $1 AND version = $2`,
    [current.id, version.toString()],
  );
  if (rows.length === 0) {
    const { rows: first } = await q.query<{ v: string | null }>(
      `SELECT min(version)::text AS v FROM experiment_versions WHERE experiment_id = $1`,
      [current.id],
    );
    throw notFound(
      `version: version ${version} of experiment "${current.key}" was made before this server kept an audit log; the oldest version kept is ${first[0]?.v ?? current.version}`,
    );
  }
  const s = rows[0]!.snapshot;
  return {
    ...current,
    key: s.key,
    salt: s.salt,
    unitType: s.unitType,
    hashVersion: s.hashVersion,
    variants: s.variants,
    rollout: s.rollout,
    status: s.status as ExperimentStatus,
    defaultVariant: s.defaultVariant,
    winner: s.winner,
    tags: s.tags,
    description: s.description,
    condition: s.condition ?? "",
    namespaceKey: s.namespaceKey,
    segmentCount: Number(s.segmentCount),
    version: BigInt(s.version),
    createdAt: new Date(s.createdAt),
    updatedAt: new Date(s.updatedAt),
  };
}

export interface ChangeFilter {
  objectKind?: ObjectKind;
  objectKey?: string;
  tokenName?: string;
  since?: Date;
  until?: Date;
  /** Only changes older than this one (the id of the previous page's last change). */
  beforeId?: bigint;
  limit: number;
}

export interface ChangeRecord {
  id: bigint;
  at: Date;
  tokenName: string;
  tokenRole: string;
  rpc: string;
  objectKind: string;
  objectKey: string;
  versionBefore: bigint | null;
  versionAfter: bigint | null;
  fields: FieldChanges;
}

/** Changes matching `f`, newest first, at most `f.limit`. */
export async function listChanges(q: Queryable, f: ChangeFilter): Promise<ChangeRecord[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    values.push(value);
    where.push(sql.replace("?", `$${values.length}`));
  };
  if (f.objectKind !== undefined) add("object_kind = ?", f.objectKind);
  if (f.objectKey !== undefined) add("object_key = ?", f.objectKey);
  if (f.tokenName !== undefined) add("token_name = ?", f.tokenName);
  if (f.since !== undefined) add("at >= ?", f.since);
  if (f.until !== undefined) add("at < ?", f.until);
  if (f.beforeId !== undefined) add("id < ?", f.beforeId.toString());
  values.push(f.limit);
  const { rows } = await q.query<{
    id: string;
    at: Date;
    token_name: string;
    token_role: string;
    rpc: string;
    object_kind: string;
    object_key: string;
    version_before: string | null;
    version_after: string | null;
    changes: FieldChanges;
  }>(
    `SELECT id::text AS id, at, token_name, token_role, rpc, object_kind, object_key,
            version_before::text AS version_before, version_after::text AS version_after, changes
       FROM audit_log ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY audit_log.id DESC LIMIT $${values.length}`,
    values,
  );
  return rows.map((r) => ({
    id: BigInt(r.id),
    at: r.at,
    tokenName: r.token_name,
    tokenRole: r.token_role,
    rpc: r.rpc,
    objectKind: r.object_kind,
    objectKey: r.object_key,
    versionBefore: r.version_before === null ? null : BigInt(r.version_before),
    versionAfter: r.version_after === null ? null : BigInt(r.version_after),
    fields: r.changes,
  }));
}

/** A page token: the id of the last change of the previous page. */
export function parsePageToken(token: string): bigint | undefined {
  if (token === "") return undefined;
  if (!/^[1-9][0-9]{0,18}$/.test(token) || BigInt(token) > 2n ** 63n - 1n) {
    throw invalidArgument("page_token", "must be a next_page_token from ListChanges");
  }
  return BigInt(token);
}
