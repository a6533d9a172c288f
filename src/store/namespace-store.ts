import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { type HashVersion, requireHashVersion, UnknownHashVersionError } from "../engine/hash.js";
import { pickSegments } from "../engine/segment-allocation.js";
import { aborted, failedPrecondition } from "../errors.js";
import type { JsonObject } from "@bufbuild/protobuf";
import { type Actor, canonicalJson, recordChange, recordExperimentChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import { experimentById, lockExperiment, type NamespaceRecord, namespaceByKey } from "./config-records.js";
import type { Database, Queryable } from "./database.js";
import { createUnique } from "./unique-keys.js";

export interface NewNamespace {
  key: string;
  salt: string;
  unitType: string;
  hashVersion: HashVersion;
  segments: number;
  defaultParams: JsonObject | undefined;
}

/** Namespaces and the segments experiments hold in them (SPEC.md "Namespaces"). */
export class NamespaceStore {
  constructor(private readonly db: Database) {}

  async createNamespace(x: NewNamespace, actor: Actor): Promise<NamespaceRecord> {
    return createUnique(this.db, "namespace", x.key, x.salt, async (tx) => {
      await tx.query(
        `INSERT INTO namespaces (key, salt, unit_type, segments, hash_version, default_params) VALUES ($1, $2, $3, $4, $5, $6)`,
        [x.key, x.salt, x.unitType, x.segments, x.hashVersion, x.defaultParams ? JSON.stringify(x.defaultParams) : null],
      );
      await recordChange(tx, {
        actor,
        objectKind: "namespace",
        objectKey: x.key,
        versionBefore: null,
        versionAfter: 1n,
        fields: {
          key: { before: null, after: x.key },
          salt: { before: null, after: x.salt },
          unit_type: { before: null, after: x.unitType },
          segments: { before: null, after: x.segments },
          hash_version: { before: null, after: x.hashVersion },
          // Only when given: a namespace without defaults has no such field to record.
          ...(x.defaultParams ? { default_params: { before: null, after: x.defaultParams } } : {}),
        },
      });
      return namespaceByKey(tx, x.key);
    });
  }

  /** Replaces the namespace's default params (undefined: removes them). Archived namespaces may
   * change too (it serves nothing until unarchived). Recorded (and the version moved) only when
   * they differ; refused (ABORTED) when `expectedVersion` is given and is not the current one. */
  async updateNamespace(
    key: string,
    defaultParams: JsonObject | undefined,
    actor: Actor,
    expectedVersion?: bigint,
  ): Promise<NamespaceRecord> {
    return this.db.transaction(async (tx) => {
      const ns = await namespaceByKey(tx, key, true, "key");
      checkNamespaceVersion(ns, expectedVersion);
      const before = ns.defaultParams ?? null;
      const after = defaultParams ?? null;
      if (canonicalJson(before) === canonicalJson(after)) return ns;
      await tx.query(`UPDATE namespaces SET default_params = $2, version = version + 1 WHERE id = $1`, [
        ns.id,
        after === null ? null : JSON.stringify(after),
      ]);
      await signalConfigChange(tx);
      await recordChange(tx, {
        actor,
        objectKind: "namespace",
        objectKey: key,
        versionBefore: ns.version,
        versionAfter: ns.version + 1n,
        fields: { default_params: { before, after } },
      });
      return namespaceByKey(tx, key);
    });
  }

  /** NOT_FOUND names `field` when there is none. */
  async getNamespace(key: string, field?: string): Promise<NamespaceRecord> {
    return namespaceByKey(this.db, key, false, field);
  }

  /** Sorted by key; archived ones only when `includeArchived`. */
  async listNamespaces(includeArchived = false): Promise<NamespaceRecord[]> {
    const { rows } = await this.db.query<{ key: string }>(
      `SELECT key FROM namespaces${includeArchived ? "" : " WHERE archived_at IS NULL"} ORDER BY key`,
    );
    return Promise.all(rows.map((r) => namespaceByKey(this.db, r.key)));
  }

  /**
   * Archives the namespace (README "Archiving"): only once every experiment in it is archived
   * (else FAILED_PRECONDITION naming them). It is left out of lists unless asked for and takes no
   * more allocations; its key and salt stay taken, its segments as they are. Archiving an archived
   * namespace changes nothing.
   */
  async archiveNamespace(key: string, actor: Actor): Promise<NamespaceRecord> {
    return this.db.transaction(async (tx) => {
      const ns = await namespaceByKey(tx, key, true, "key");
      if (ns.archivedAt) return ns;
      const { rows } = await tx.query<{ key: string }>(
        `SELECT key FROM experiments WHERE namespace_id = $1 AND archived_at IS NULL ORDER BY key FOR SHARE`,
        [ns.id],
      );
      if (rows.length > 0) {
        throw failedPrecondition(
          `key: namespace "${key}" still holds experiments that are not archived (${rows.map((r) => r.key).join(", ")}): archive them first`,
        );
      }
      await tx.query(`UPDATE namespaces SET archived_at = now(), version = version + 1 WHERE id = $1`, [ns.id]);
      await signalConfigChange(tx);
      await recordNamespaceArchive(tx, actor, ns, true);
      return namespaceByKey(tx, key);
    });
  }

  /** Makes an archived namespace take allocations again. Unarchiving one that is not archived
   * changes nothing. */
  async unarchiveNamespace(key: string, actor: Actor): Promise<NamespaceRecord> {
    return this.db.transaction(async (tx) => {
      const ns = await namespaceByKey(tx, key, true, "key");
      if (!ns.archivedAt) return ns;
      await tx.query(`UPDATE namespaces SET archived_at = NULL, version = version + 1 WHERE id = $1`, [ns.id]);
      await signalConfigChange(tx);
      await recordNamespaceArchive(tx, actor, ns, false);
      return namespaceByKey(tx, key);
    });
  }

  /**
   * Gives the experiment `count` more free segments (engine/segment-allocation.ts) and stores
   * them. Nothing else moves.
   */
  async allocateSegments(namespaceKey: string, experimentKey: string, count: number, actor: Actor) {
    return this.db.transaction(async (tx) => {
      const ns = await namespaceByKey(tx, namespaceKey, true);
      if (ns.archivedAt) {
        throw failedPrecondition(`namespace_key: namespace "${namespaceKey}" is archived; unarchive it (UnarchiveNamespace) first`);
      }
      const exp = await lockExperiment(tx, experimentKey);
      if (exp.namespaceId !== null && exp.namespaceId !== ns.id) {
        throw failedPrecondition(`experiment_key: experiment "${experimentKey}" already belongs to namespace "${exp.namespaceKey}"`);
      }
      if (exp.unitType !== ns.unitType) {
        throw failedPrecondition(
          `experiment_key: experiment "${experimentKey}" has unit type ${exp.unitType}, namespace "${namespaceKey}" has ${ns.unitType}`,
        );
      }
      const hashVersion = namespaceHashVersion(ns);
      const { rows: taken } = await tx.query<{ segment: number }>(`SELECT segment FROM namespace_segments WHERE namespace_id = $1`, [
        ns.id,
      ]);
      const picked = pickSegments(
        { key: ns.key, salt: ns.salt, segments: ns.segments, hashVersion },
        taken.map((t) => t.segment),
        exp.key,
        count,
      );
      await tx.query(`INSERT INTO namespace_segments (namespace_id, segment, experiment_id) SELECT $1, s, $2 FROM unnest($3::int[]) AS s`, [
        ns.id,
        exp.id,
        picked,
      ]);
      await tx.query(`UPDATE experiments SET namespace_id = $2, version = version + 1, updated_at = now() WHERE id = $1`, [exp.id, ns.id]);
      await tx.query(`UPDATE namespaces SET version = version + 1 WHERE id = $1`, [ns.id]);
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      // One change: the experiment's (its version moves); the namespace is named in its fields.
      await recordExperimentChange(tx, actor, exp, after, { segments_allocated: { before: null, after: picked.length } });
      return { namespace: await namespaceByKey(tx, namespaceKey), experiment: after };
    });
  }

  /** Frees every segment the experiment holds; it stays in the namespace, holding none, so it never
   * overlaps the namespace's other experiments. Only when the experiment is STOPPED or holds no
   * stored assignment (SPEC.md "Namespaces"): otherwise its stored units answer STICKY before the
   * namespace rule while another experiment could take their segments and enrol them too. */
  async releaseSegments(namespaceKey: string, experimentKey: string, actor: Actor) {
    return this.db.transaction(async (tx) => {
      const ns = await namespaceByKey(tx, namespaceKey, true);
      // An archived experiment (DRAFT or STOPPED) may still give its segments back.
      const exp = await lockExperiment(tx, experimentKey, "experiment_key", true);
      if (exp.namespaceId !== ns.id) {
        throw failedPrecondition(`experiment_key: experiment "${experimentKey}" is not in namespace "${namespaceKey}"`);
      }
      if (exp.status !== ExperimentStatus.STOPPED) {
        const { rows } = await tx.query<{ stored: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM assignments WHERE experiment_id = $1) AS stored`,
          [exp.id],
        );
        if (rows[0]!.stored) {
          throw failedPrecondition(
            `experiment_key: experiment "${experimentKey}" is ${ExperimentStatus[exp.status]} and has stored assignments; ` +
              `stop it before releasing its segments (its stored units keep answering STICKY, so another experiment ` +
              `taking the freed segments would enrol the same units and the namespace would no longer be exclusive)`,
          );
        }
      }
      const { rowCount } = await tx.query(`DELETE FROM namespace_segments WHERE namespace_id = $1 AND experiment_id = $2`, [ns.id, exp.id]);
      await tx.query(`UPDATE experiments SET version = version + 1, updated_at = now() WHERE id = $1`, [exp.id]);
      if ((rowCount ?? 0) > 0) await tx.query(`UPDATE namespaces SET version = version + 1 WHERE id = $1`, [ns.id]);
      await signalConfigChange(tx);
      const after = await experimentById(tx, exp.id);
      await recordExperimentChange(tx, actor, exp, after, {
        segments_released: { before: null, after: rowCount },
      });
      return { namespace: await namespaceByKey(tx, namespaceKey), experiment: after, released: rowCount };
    });
  }
}

/** A namespace made by a newer server, with a hash version this one cannot compute, cannot take
 * allocations here. */
function namespaceHashVersion(ns: NamespaceRecord): HashVersion {
  try {
    return requireHashVersion(`namespace "${ns.key}"`, ns.hashVersion);
  } catch (err) {
    if (err instanceof UnknownHashVersionError) throw failedPrecondition(`namespace_key: ${err.message}`);
    throw err;
  }
}

/** The audit log's row of an (un)archived namespace (`ns` as it was before). */
function recordNamespaceArchive(tx: Queryable, actor: Actor, ns: NamespaceRecord, archived: boolean): Promise<void> {
  return recordChange(tx, {
    actor,
    objectKind: "namespace",
    objectKey: ns.key,
    versionBefore: ns.version,
    versionAfter: ns.version + 1n,
    fields: { archived: { before: !archived, after: archived } },
  });
}

/** ABORTED unless `expected` is undefined or the namespace's current version. */
export function checkNamespaceVersion(ns: NamespaceRecord, expected: bigint | undefined): void {
  if (expected !== undefined && expected !== ns.version) {
    throw aborted(`version: namespace "${ns.key}" is at version ${ns.version}, not ${expected}; read it again and retry`);
  }
}
