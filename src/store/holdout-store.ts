import type { HashVersion } from "../engine/hash.js";
import { aborted, notFound } from "../errors.js";
import { type Actor, recordChange } from "./audit-log.js";
import { signalConfigChange } from "./config-change.js";
import type { Database, Queryable } from "./database.js";
import { createUnique } from "./unique-keys.js";

/** A holdout (SPEC.md "Holdouts") as stored. Key, salt, unit type and hash version never change. */
export interface HoldoutRecord {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  share: number;
  tags: string[];
  createdAt: Date;
  updatedAt: Date;
  /** 1 when created, one more with every change of share or tags. */
  version: bigint;
}

export interface NewHoldout {
  key: string;
  salt: string;
  unitType: string;
  hashVersion: HashVersion;
  share: number;
  tags: string[];
}

/** Per experiment a holdout covers: units it held out (answered HOLDOUT) and units stored by hashing. */
export interface HoldoutExperimentCounts {
  experimentId: number;
  heldOut: number;
  exposed: number;
}

interface HoldoutRow {
  id: number;
  key: string;
  salt: string;
  unit_type: string;
  hash_version: number;
  share: number;
  tags: string[];
  created_at: Date;
  updated_at: Date;
  version: string;
}

const SELECT_HOLDOUTS = `SELECT id, key, salt, unit_type, hash_version, share, tags, created_at, updated_at, version::text AS version FROM holdouts`;

function toRecord(r: HoldoutRow): HoldoutRecord {
  return {
    id: r.id,
    key: r.key,
    salt: r.salt,
    unitType: r.unit_type,
    hashVersion: r.hash_version,
    share: r.share,
    tags: r.tags,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    version: BigInt(r.version),
  };
}

/** Every holdout, sorted by key (the configuration snapshot reads them too). */
export async function allHoldouts(q: Queryable): Promise<HoldoutRecord[]> {
  const { rows } = await q.query<HoldoutRow>(`${SELECT_HOLDOUTS} ORDER BY key`);
  return rows.map(toRecord);
}

async function holdoutByKey(q: Queryable, key: string, lock = false): Promise<HoldoutRecord> {
  const { rows } = await q.query<HoldoutRow>(`${SELECT_HOLDOUTS} WHERE key = $1${lock ? " FOR UPDATE" : ""}`, [key]);
  if (rows.length === 0) throw notFound(`key: no holdout "${key}"`);
  return toRecord(rows[0]!);
}

/** Holdouts: created with a salt unique across experiments, namespaces and holdouts; their share
 * and tags change, audited; every change is a configuration change (every server reloads). */
export class HoldoutStore {
  constructor(private readonly db: Database) {}

  async createHoldout(x: NewHoldout, actor: Actor): Promise<HoldoutRecord> {
    return createUnique(this.db, "holdout", x.key, x.salt, async (tx) => {
      await tx.query(`INSERT INTO holdouts (key, salt, unit_type, hash_version, share, tags) VALUES ($1, $2, $3, $4, $5, $6)`, [
        x.key,
        x.salt,
        x.unitType,
        x.hashVersion,
        x.share,
        x.tags,
      ]);
      await recordChange(tx, {
        actor,
        objectKind: "holdout",
        objectKey: x.key,
        versionBefore: null,
        versionAfter: 1n,
        fields: {
          key: { before: null, after: x.key },
          salt: { before: null, after: x.salt },
          unit_type: { before: null, after: x.unitType },
          hash_version: { before: null, after: x.hashVersion },
          share: { before: null, after: x.share },
          tags: { before: null, after: x.tags },
        },
      });
      return holdoutByKey(tx, x.key);
    });
  }

  getHoldout(key: string): Promise<HoldoutRecord> {
    return holdoutByKey(this.db, key);
  }

  listHoldouts(): Promise<HoldoutRecord[]> {
    return allHoldouts(this.db);
  }

  /** Changes share and/or tags (undefined: unchanged); records the fields that differ and moves
   * the version when any does. Refused (ABORTED) when `expectedVersion` is given and is not the
   * current one. */
  async updateHoldout(
    key: string,
    change: { share?: number; tags?: string[] },
    actor: Actor,
    expectedVersion?: bigint,
  ): Promise<HoldoutRecord> {
    return this.db.transaction(async (tx) => {
      const h = await holdoutByKey(tx, key, true);
      if (expectedVersion !== undefined && expectedVersion !== h.version) {
        throw aborted(`version: holdout "${key}" is at version ${h.version}, not ${expectedVersion}; read it again and retry`);
      }
      const share = change.share ?? h.share;
      const tags = change.tags ?? h.tags;
      const fields: Record<string, { before: number | string[]; after: number | string[] }> = {};
      if (share !== h.share) fields.share = { before: h.share, after: share };
      if (tags.join("\n") !== h.tags.join("\n")) fields.tags = { before: h.tags, after: tags };
      if (Object.keys(fields).length === 0) return h;
      await tx.query(`UPDATE holdouts SET share = $2, tags = $3, updated_at = now(), version = version + 1 WHERE id = $1`, [
        h.id,
        share,
        tags,
      ]);
      await signalConfigChange(tx);
      await recordChange(tx, {
        actor,
        objectKind: "holdout",
        objectKey: key,
        versionBefore: h.version,
        versionAfter: h.version + 1n,
        fields,
      });
      return holdoutByKey(tx, key);
    });
  }

  /** For each of `experimentIds`: distinct units the holdout held out of it, and units stored in it
   * by hashing. */
  async counts(holdoutId: number, experimentIds: readonly number[]): Promise<HoldoutExperimentCounts[]> {
    if (experimentIds.length === 0) return [];
    const { rows } = await this.db.query<{ experiment_id: number; held_out: string; exposed: string }>(
      `SELECT e.id AS experiment_id,
              (SELECT count(*) FROM holdout_units h WHERE h.holdout_id = $1 AND h.experiment_id = e.id)::text AS held_out,
              (SELECT count(*) FROM assignments a WHERE a.experiment_id = e.id AND a.source = 1)::text AS exposed
         FROM unnest($2::int[]) AS e(id)`,
      [holdoutId, experimentIds],
    );
    return rows.map((r) => ({ experimentId: r.experiment_id, heldOut: Number(r.held_out), exposed: Number(r.exposed) }));
  }
}
