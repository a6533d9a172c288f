import { randomUUID } from "node:crypto";
import { type Actor, recordChange } from "./audit-log.js";
import { escapeCopyText, unescapeCopyText } from "./copy-text.js";
import type { Database } from "./database.js";
import { isUniqueViolation } from "./pg-errors.js";

export interface CohortRecord {
  id: number;
  name: string;
  unitType: string;
  size: number;
  createdAt: Date;
  createdBy: string;
  /** A table of (unit, variant) rows (uploaded with variants): its distinct variant keys, sorted;
   * null for a plain cohort of ids. */
  variants: string[] | null;
  /** Uploaded with per-unit attributes (for targeting conditions). */
  hasAttributes: boolean;
}

interface CohortRow {
  id: number;
  name: string;
  unit_type: string;
  size: string;
  created_at: Date | string;
  created_by: string;
  variants: string[] | null;
  has_attributes: boolean;
}

const toRecord = (r: CohortRow): CohortRecord => ({
  id: r.id,
  name: r.name,
  unitType: r.unit_type,
  size: Number(r.size),
  createdAt: new Date(r.created_at),
  createdBy: r.created_by,
  variants: r.variants,
  hasAttributes: r.has_attributes,
});

const COLUMNS = "id, name, unit_type, size, created_at, created_by, variants, has_attributes";

/** Ids of a cohort one page of an export reads (keyset on position): small enough that a stalled
 * reader holds little, large enough that the cost of each statement vanishes. */
export const COHORT_PAGE_ROWS = 10_000;

/** An upload in progress: ids are staged (outside any transaction, so nothing is held between
 * messages) and become the cohort, de-duplicated, in one transaction at `commit`. */
export interface CohortUpload {
  /** Stages ids, with their variant keys (as many) when the upload has a variant column. */
  write(unitIds: readonly string[], variants?: readonly string[], attributes?: readonly (string | null)[]): Promise<void>;
  /** Creates the cohort from what was written (replacing one of that name when `replace`);
   * throws ALREADY_EXISTS-worthy `CohortExistsError` when the name is taken and not `replace`. */
  commit(meta: {
    name: string;
    unitType: string;
    createdBy: string;
    replace: boolean;
    /** The upload has a variant column: the cohort is a table of (unit, variant) rows. */
    withVariants?: boolean;
    /** Who uploaded it, for the audit log. */
    actor: Actor;
  }): Promise<{ cohort: CohortRecord; received: number }>;
  /** Drops what was staged. */
  abort(): Promise<void>;
}

export class CohortExistsError extends Error {}

/** Staged ids older than this belong to uploads whose server died: removed by the next upload. */
const STALE_UPLOAD = "1 day";

/**
 * Cohorts and their members. Uploads stage ids with COPY where the database has it (else
 * INSERT … SELECT FROM unnest), then de-duplicate and number them in one INSERT … SELECT.
 */
export class CohortStore {
  constructor(private readonly db: Database) {}

  async beginUpload(): Promise<CohortUpload> {
    const uploadId = randomUUID();
    const db = this.db;
    await db.query(`DELETE FROM cohort_uploads WHERE started_at < now() - interval '${STALE_UPLOAD}'`);
    let position = 0;
    let withAttributes = false;
    const abort = async () => {
      await db.query("DELETE FROM cohort_uploads WHERE upload_id = $1", [uploadId]).catch(() => {});
    };
    return {
      abort,
      async write(unitIds, variants, attributes) {
        if (unitIds.length === 0) return;
        const first = position;
        position += unitIds.length;
        if (attributes) withAttributes = true;
        const bulk = db.bulkCopy;
        if (bulk) {
          let text = "";
          for (let i = 0; i < unitIds.length; i++) {
            text += `${uploadId}\t${first + i}\t${escapeCopyText(unitIds[i]!)}`;
            if (variants) text += `\t${escapeCopyText(variants[i]!)}`;
            if (attributes) {
              const a = attributes[i];
              text += a === null || a === undefined ? "\t\\N" : `\t${escapeCopyText(a)}`;
            }
            text += "\n";
          }
          const columns = `unit_id${variants ? ", variant" : ""}${attributes ? ", attributes" : ""}`;
          const session = await bulk.session();
          let clean = false;
          try {
            await session.copyFrom(`COPY cohort_uploads (upload_id, position, ${columns}) FROM STDIN`, [Buffer.from(text)]);
            clean = true;
          } finally {
            session.release(!clean);
          }
          return;
        }
        await db.query(
          "INSERT INTO cohort_uploads (upload_id, position, unit_id, variant, attributes) SELECT $1, $2::bigint + o - 1, u, v, a::jsonb FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(u, v, a, o)",
          [uploadId, first, unitIds, variants ?? null, attributes ?? null],
        );
      },
      async commit(meta) {
        try {
          const cohort = await db.transaction(async (tx) => {
            let replaced = false;
            if (meta.replace) {
              const old = await tx.query<{ id: number }>("DELETE FROM cohorts WHERE name = $1 RETURNING id", [meta.name]);
              for (const { id } of old.rows) await tx.query("DELETE FROM cohort_members WHERE cohort_id = $1", [id]);
              replaced = old.rows.length > 0;
            }
            const made = await tx.query<CohortRow>(
              `INSERT INTO cohorts (name, unit_type, size, created_by) VALUES ($1, $2, 0, $3) RETURNING ${COLUMNS}`,
              [meta.name, meta.unitType, meta.createdBy],
            );
            const id = made.rows[0]!.id;
            // A unit sent twice keeps its first place (and, with variants or attributes, its first
            // row's).
            const moved =
              meta.withVariants || withAttributes
                ? await tx.query(
                    `INSERT INTO cohort_members (cohort_id, position, unit_id, variant, attributes)
                   SELECT $1, row_number() OVER (ORDER BY position) - 1, unit_id, variant, attributes
                   FROM (SELECT DISTINCT ON (unit_id) unit_id, position, variant, attributes FROM cohort_uploads
                          WHERE upload_id = $2 ORDER BY unit_id, position) s`,
                    [id, uploadId],
                  )
                : await tx.query(
                    `INSERT INTO cohort_members (cohort_id, position, unit_id)
                   SELECT $1, row_number() OVER (ORDER BY first) - 1, unit_id
                   FROM (SELECT unit_id, min(position) AS first FROM cohort_uploads WHERE upload_id = $2 GROUP BY unit_id) s`,
                    [id, uploadId],
                  );
            const done = meta.withVariants
              ? await tx.query<CohortRow>(
                  `UPDATE cohorts SET size = $2,
                     variants = ARRAY(SELECT DISTINCT variant FROM cohort_members WHERE cohort_id = $1 ORDER BY variant)
                   WHERE id = $1 RETURNING ${COLUMNS}`,
                  [id, moved.rowCount],
                )
              : await tx.query<CohortRow>(`UPDATE cohorts SET size = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, moved.rowCount]);
            await tx.query("DELETE FROM cohort_uploads WHERE upload_id = $1", [uploadId]);
            if (withAttributes)
              done.rows[0] = (
                await tx.query<CohortRow>(`UPDATE cohorts SET has_attributes = true WHERE id = $1 RETURNING ${COLUMNS}`, [id])
              ).rows[0]!;
            const cohort = toRecord(done.rows[0]!);
            await recordChange(tx, {
              actor: meta.actor,
              objectKind: "cohort",
              objectKey: cohort.name,
              versionBefore: null,
              versionAfter: null,
              fields: {
                unit_type: { before: null, after: cohort.unitType },
                size: { before: null, after: cohort.size },
                ids_received: { before: null, after: position },
                ...(cohort.variants ? { variant_keys: { before: null, after: cohort.variants } } : {}),
                ...(replaced ? { replaced: { before: null, after: true } } : {}),
                ...(cohort.hasAttributes ? { unit_attributes: { before: null, after: true } } : {}),
              },
            });
            return cohort;
          });
          return { cohort, received: position };
        } catch (err) {
          await abort();
          if (isUniqueViolation(err)) throw new CohortExistsError(meta.name);
          throw err;
        }
      },
    };
  }

  async get(name: string): Promise<CohortRecord | undefined> {
    const r = await this.db.query<CohortRow>(`SELECT ${COLUMNS} FROM cohorts WHERE name = $1`, [name]);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async getById(id: number): Promise<CohortRecord | undefined> {
    const r = await this.db.query<CohortRow>(`SELECT ${COLUMNS} FROM cohorts WHERE id = $1`, [id]);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async list(): Promise<CohortRecord[]> {
    const r = await this.db.query<CohortRow>(`SELECT ${COLUMNS} FROM cohorts ORDER BY name`);
    return r.rows.map(toRecord);
  }

  /** Deletes a cohort and its members in one transaction (recorded in the audit log); false when
   * there was none. */
  async delete(name: string, actor: Actor): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const old = await tx.query<{ id: number; size: string; unit_type: string }>(
        "DELETE FROM cohorts WHERE name = $1 RETURNING id, size, unit_type",
        [name],
      );
      for (const { id } of old.rows) await tx.query("DELETE FROM cohort_members WHERE cohort_id = $1", [id]);
      const gone = old.rows[0];
      if (!gone) return false;
      await recordChange(tx, {
        actor,
        objectKind: "cohort",
        objectKey: name,
        versionBefore: null,
        versionAfter: null,
        fields: {
          deleted: { before: false, after: true },
          size: { before: Number(gone.size), after: null },
          unit_type: { before: gone.unit_type, after: null },
        },
      });
      return true;
    });
  }

  /** The ids at positions [from, to) of a cohort, in order (one statement). */
  async range(cohortId: number, from: number, to: number): Promise<string[]> {
    const r = await this.db.query<{ unit_id: string }>(
      "SELECT unit_id FROM cohort_members WHERE cohort_id = $1 AND position >= $2 AND position < $3 ORDER BY position",
      [cohortId, from, to],
    );
    return r.rows.map((x) => x.unit_id);
  }

  /** The (unit, variant) rows at positions [from, to) of a cohort uploaded with variants, in order. */
  async rows(cohortId: number, from: number, to: number): Promise<{ unitIds: string[]; variants: string[] }> {
    const r = await this.db.query<{ unit_id: string; variant: string }>(
      "SELECT unit_id, variant FROM cohort_members WHERE cohort_id = $1 AND position >= $2 AND position < $3 ORDER BY position",
      [cohortId, from, to],
    );
    return { unitIds: r.rows.map((x) => x.unit_id), variants: r.rows.map((x) => x.variant) };
  }

  /** The ids at positions [from, to) of a cohort, in order, with each unit's attributes (JSON
   * objects; null for a unit uploaded without). */
  async rangeWithAttributes(
    cohortId: number,
    from: number,
    to: number,
  ): Promise<{ unitIds: string[]; attributes: (Record<string, unknown> | null)[] }> {
    const r = await this.db.query<{ unit_id: string; attributes: Record<string, unknown> | string | null }>(
      "SELECT unit_id, attributes FROM cohort_members WHERE cohort_id = $1 AND position >= $2 AND position < $3 ORDER BY position",
      [cohortId, from, to],
    );
    return {
      unitIds: r.rows.map((x) => x.unit_id),
      attributes: r.rows.map((x) =>
        typeof x.attributes === "string" ? (JSON.parse(x.attributes) as Record<string, unknown>) : x.attributes,
      ),
    };
  }

  /**
   * Every id of a cohort in upload order, in batches of `batchSize`, one page of `pageRows` per
   * statement (a keyset on position): a connection is held only while a page is read, never while
   * the caller takes its time, and at most one page is held in memory.
   */
  async *export(cohortId: number, batchSize: number, pageRows: number = COHORT_PAGE_ROWS): AsyncGenerator<string[]> {
    let batch: string[] = [];
    for (let from = 0; ; from += pageRows) {
      const page = await this.page(cohortId, from, from + pageRows);
      for (const id of page) {
        batch.push(id);
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      if (page.length < pageRows) break;
    }
    if (batch.length > 0) yield batch;
  }

  /** One page by COPY where the database has it (several times faster than SELECT), else SELECT. */
  private async page(cohortId: number, from: number, to: number): Promise<string[]> {
    const bulk = this.db.bulkCopy;
    if (!bulk) return this.range(cohortId, from, to);
    if (![cohortId, from, to].every(Number.isSafeInteger)) throw new TypeError("cohort page bounds must be integers");
    const session = await bulk.session();
    let clean = false;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of session.copyTo(
        `COPY (SELECT unit_id FROM cohort_members WHERE cohort_id = ${cohortId} AND position >= ${from} AND position < ${to} ORDER BY position) TO STDOUT`,
      )) {
        chunks.push(chunk);
      }
      clean = true;
      const text = Buffer.concat(chunks).toString("utf8");
      if (text.length === 0) return [];
      return text.slice(0, -1).split("\n").map(unescapeCopyText);
    } finally {
      session.release(!clean);
    }
  }
}
