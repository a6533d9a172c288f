import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { type Actor, recordChange } from "./audit-log.js";
import { beginCopyImport } from "./copy-import.js";
import { type ExportedRow, exportByCopy, exportByPartitions, MAX_MERGED_PARTITIONS } from "./copy-export.js";
import type { Database, Queryable } from "./database.js";
import type { ImportStaging } from "./import-staging.js";
import { beginUnnestImport } from "./unnest-import.js";

export type { ExportedRow } from "./copy-export.js";
export type { ImportResult, ImportStaging, StagedRows } from "./import-staging.js";

/** Rows per COPY (and per savepoint) of an import on PostgreSQL: large enough that the cost of
 * each statement vanishes, small enough that a chunk's text stays a few MB. */
export const IMPORT_CHUNK_ROWS = 100_000;
/**
 * Most chunks of one import COPYed straight into assignments, each under its own savepoint. A
 * PostgreSQL backend keeps the ids of at most 64 subtransactions where other sessions can see
 * them; past that its snapshot "overflows" and every other session's visibility checks of recent
 * rows go through pg_subtrans, slowing the whole database while the import runs. Later chunks take
 * the staged merge, which needs no savepoint. (4,800,000 rows at the default chunk size.)
 */
export const MAX_IMPORT_SAVEPOINTS = 48;

/** One page of a copy: source rows read, rows stored in the target, the last unit id read. */
export interface CopiedPage {
  scanned: number;
  copied: number;
  last: string | null;
}

export interface TransferStoreOptions {
  /** Rows per COPY of an import; default IMPORT_CHUNK_ROWS. */
  importChunkRows?: number;
  /** Chunks of one import COPYed straight into assignments; default MAX_IMPORT_SAVEPOINTS. */
  maxImportSavepoints?: number;
}

/**
 * Bulk movement of stored assignments: imports staged and merged in one transaction (COPY where
 * the database has it: copy-import.ts; else unnest-import.ts), exports (COPY: copy-export.ts; else
 * pages of SELECT), and copies between experiments in SQL.
 */
export class TransferStore {
  private readonly copyOptions: { chunkRows: number; maxSavepoints: number };

  constructor(
    private readonly db: Database,
    options: TransferStoreOptions = {},
  ) {
    this.copyOptions = {
      chunkRows: options.importChunkRows ?? IMPORT_CHUNK_ROWS,
      maxSavepoints: options.maxImportSavepoints ?? MAX_IMPORT_SAVEPOINTS,
    };
  }

  /** Starts an import; the caller sees the same ImportStaging, and the same all-or-nothing result,
   * whichever way the database stages it. */
  async beginImport(): Promise<ImportStaging> {
    const bulk = this.db.bulkCopy;
    if (bulk) return beginCopyImport(await bulk.session(), this.copyOptions);
    return beginUnnestImport(await this.db.session());
  }

  /** Every stored assignment of an experiment, ordered by unit id, in batches: pages of COPY where
   * the database has it (each partition read on its own and merged here, where the table allows:
   * exportByPartitions), pages of SELECT elsewhere. */
  async *exportBatches(experimentId: number, batchSize: number): AsyncGenerator<ExportedRow[]> {
    const bulk = this.db.bulkCopy;
    if (bulk) {
      const partitions = await this.partitionsByBytes();
      yield* partitions ? exportByPartitions(bulk, experimentId, batchSize, partitions) : exportByCopy(bulk, experimentId, batchSize);
      return;
    }
    let after: string | undefined;
    for (;;) {
      const rows = await this.exportPage(experimentId, after, batchSize);
      if (rows.length > 0) yield rows.map((r) => ({ unitId: r.unit_id, variant: r.variant, source: r.source, version: r.version }));
      if (rows.length < batchSize) return;
      after = rows[rows.length - 1]!.unit_id;
    }
  }

  /**
   * The partitions of assignments (SQL names), when this process can merge them in the table's
   * order: partitioned (up to MAX_MERGED_PARTITIONS), unit ids compared by their bytes (COLLATE "C",
   * migration 15) of UTF-8 text. Undefined otherwise (an installation partitioned before migration
   * 14, or before the in-place upgrade's swap), which exports through the database's merge. Asked at
   * each export: the swap of the in-place upgrade may change the answer while the server runs.
   */
  async partitionsByBytes(): Promise<string[] | undefined> {
    const { rows } = await this.db.query<{ partitions: string[]; bytewise: boolean }>(
      `SELECT ARRAY(SELECT i.inhrelid::regclass::text FROM pg_inherits i WHERE i.inhparent = 'assignments'::regclass
                     ORDER BY i.inhrelid) AS partitions,
              current_setting('server_encoding') = 'UTF8' AND EXISTS (
                SELECT 1 FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
                 WHERE a.attrelid = 'assignments'::regclass AND a.attname = 'unit_id' AND c.collname IN ('C', 'POSIX')) AS bytewise`,
    );
    const { partitions, bytewise } = rows[0]!;
    return bytewise && partitions.length > 0 && partitions.length <= MAX_MERGED_PARTITIONS ? partitions : undefined;
  }

  /** One page of an experiment's stored assignments, ordered by unit id, after `afterUnit`. */
  async exportPage(experimentId: number, afterUnit: string | undefined, limit: number) {
    const { rows } = await this.db.query<{ unit_id: string; variant: number; source: number; version: string }>(
      afterUnit === undefined
        ? `SELECT unit_id, variant, source, version::text FROM assignments WHERE experiment_id = $1 ORDER BY unit_id LIMIT $2`
        : `SELECT unit_id, variant, source, version::text FROM assignments WHERE experiment_id = $1 AND unit_id > $3 ORDER BY unit_id LIMIT $2`,
      afterUnit === undefined ? [experimentId, limit] : [experimentId, limit, afterUnit],
    );
    return rows;
  }

  /**
   * Cuts an experiment's stored assignments (by unit id) into ranges of about `size` rows, for a
   * job's chunks: the last unit id of each range but the last (one index-only scan). Chunk i holds
   * the units after bound i-1 (from the first) up to bound i (included; to the end for the last).
   */
  async unitBounds(experimentId: number, size: number): Promise<string[]> {
    const { rows } = await this.db.query<{ unit_id: string }>(
      `SELECT unit_id FROM (SELECT unit_id, row_number() OVER (ORDER BY unit_id) AS n FROM assignments WHERE experiment_id = $1) s
        WHERE n % $2 = 0 ORDER BY unit_id`,
      [experimentId, size],
    );
    return rows.map((r) => r.unit_id);
  }

  async countAssignments(experimentId: number): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM assignments WHERE experiment_id = $1`, [experimentId]);
    return Number(rows[0]!.n);
  }

  /**
   * Copies one page of the source experiment's rows (after `afterUnit`, by unit id) into the
   * target through `mapping` (source variant id -> target variant id), leaving units the target
   * already has alone. One transaction, committed on its own and recorded in the audit log as one
   * change of the target (its counts): an interrupted copy resumes by running again.
   * `range.until` stops the page at that unit id (included); `range.within` runs in the page's
   * transaction, after the copy (a job's checkpoint).
   */
  async copyPage(
    source: { id: number; key: string },
    target: { id: number; key: string; version: bigint },
    mapping: Map<number, number>,
    afterUnit: string | undefined,
    limit: number,
    actor: Actor,
    range: { until?: string; within?: (tx: Queryable, page: CopiedPage) => Promise<void> } = {},
  ): Promise<CopiedPage> {
    return this.db.transaction(async (tx) => {
      // The rows this transaction inserts are COPIED events, not IMPORTED (migration 7's triggers).
      await tx.query(`SELECT set_config('assignment.event_kind', 'copy', true)`);
      const { rows } = await tx.query<{ scanned: string; copied: string; last: string | null; version: string }>(
        `WITH src AS (
           SELECT unit_id, variant FROM assignments
            WHERE experiment_id = $1 AND ($6::text IS NULL OR unit_id > $6) AND ($8::text IS NULL OR unit_id <= $8)
            ORDER BY unit_id LIMIT $7
         ), ins AS (
           INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
           SELECT $2, s.unit_id, m.t, $3, ${Source.IMPORT}
             FROM src s JOIN unnest($4::smallint[], $5::smallint[]) AS m(f, t) ON m.f = s.variant
           ON CONFLICT DO NOTHING
           RETURNING 1
         )
         SELECT (SELECT count(*) FROM src) AS scanned, (SELECT count(*) FROM ins) AS copied,
                (SELECT unit_id FROM src ORDER BY unit_id DESC LIMIT 1) AS last,
                (SELECT version::text FROM experiments WHERE id = $2) AS version`,
        [
          source.id,
          target.id,
          target.version.toString(),
          [...mapping.keys()],
          [...mapping.values()],
          afterUnit ?? null,
          limit,
          range.until ?? null,
        ],
      );
      const r = rows[0]!;
      const page = { scanned: Number(r.scanned), copied: Number(r.copied), last: r.last };
      await recordChange(tx, {
        actor,
        objectKind: "experiment",
        objectKey: target.key,
        versionBefore: BigInt(r.version), // a copy makes no new version
        versionAfter: BigInt(r.version),
        fields: {
          source_experiment: { before: null, after: source.key },
          rows_scanned: { before: null, after: page.scanned },
          rows_copied: { before: null, after: page.copied },
        },
      });
      if (range.within) await range.within(tx, page);
      return page;
    });
  }
}
