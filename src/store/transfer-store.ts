import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { Database, Queryable } from "./database.js";
import { CONFIG_CHANNEL } from "./experiment-store.js";
import { exportByCopy, type ExportedRow } from "./pg-export.js";
import { mapDatabaseError, PgDatabase } from "./pg-database.js";
import { cancelled } from "../errors.js";

/**
 * Rows ready for staging, in columns (one import message's worth, in import order): ids already
 * resolved and checked. Columns rather than an object per row: an import of millions of rows
 * would otherwise spend much of its time allocating and collecting them.
 */
export interface StagedRows {
  readonly experimentIds: Int32Array;
  readonly unitIds: readonly string[];
  readonly variantIds: Int32Array;
}

export interface ImportResult {
  imported: number;
  /** Experiments whose stored values were replaced (OVERWRITE): their caches must move on. */
  overwrittenExperiments: number[];
}

/** An import in progress: rows are staged, then merged into assignments all at once, or not at all. */
export interface ImportStaging {
  /** Takes rows, in import order; resolves when more can be taken (backpressure). `overwrite` is
   * the import's policy (known from its first message), the same on every call. */
  write(rows: StagedRows, overwrite: boolean): Promise<void>;
  /** Stores every row taken, in one transaction: the first row of a unit counts; existing units
   * are skipped, or replaced with `overwrite` (overrides never are). `wanted` is asked last,
   * right before the transaction commits: false rolls everything back (the caller went away). */
  commit(overwrite: boolean, wanted?: () => boolean): Promise<ImportResult>;
  /** Leaves nothing behind. */
  abort(): Promise<void>;
}

/** Rows staged per INSERT … SELECT FROM unnest on the fallback path. */
const UNNEST_STAGING_ROWS = 10_000;
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

export interface TransferStoreOptions {
  /** Rows per COPY of an import; default IMPORT_CHUNK_ROWS. */
  importChunkRows?: number;
  /** Chunks of one import COPYed straight into assignments; default MAX_IMPORT_SAVEPOINTS. */
  maxImportSavepoints?: number;
}
let stagingTables = 0;

/** COPY text format: backslash, tab, newline and carriage return are escaped. */
function copyText(s: string): string {
  return /[\\\t\n\r]/.test(s)
    ? s.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r"))
    : s;
}

/**
 * Rows as COPY text for assignments (experiment_id, unit_id, variant, version, source), encoded
 * at once: a Buffer lives outside the JS heap, where a string built row by row would be a tree
 * of pieces for the garbage collector to walk until it is sent. The parts around the unit id
 * repeat, so they are built once per experiment and variant.
 */
function copyRows(rows: StagedRows, versions: ReadonlyMap<number, string>): Buffer {
  let text = "";
  let experiment = -1;
  let prefix = "";
  let suffixes: string[] = [];
  for (let i = 0; i < rows.unitIds.length; i++) {
    const e = rows.experimentIds[i];
    if (e !== experiment) {
      experiment = e;
      prefix = `${e}\t`;
      suffixes = [];
    }
    const v = rows.variantIds[i];
    text += prefix + copyText(rows.unitIds[i]) + (suffixes[v] ??= `\t${v}\t${versions.get(e)}\t${Source.IMPORT}\n`);
  }
  return Buffer.from(text, "utf8");
}

/**
 * The merge of an import, inside the caller's transaction: staged rows (table `staging`, with
 * columns pos, experiment_id, unit_id, variant) into assignments. The first row of a unit (by
 * pos) counts. With `overwrite`, stored units are replaced (except overrides), and the
 * experiments touched move to a new version, which the rows record, and a new cache generation.
 */
async function mergeStaged(tx: Queryable, staging: string, overwrite: boolean): Promise<ImportResult> {
  const columns = `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)`;
  let overwrittenExperiments: number[] = [];
  if (overwrite) {
    const { rows: ex } = await tx.query<{ id: number }>(
      `UPDATE experiments SET cache_generation = cache_generation + 1, version = version + 1, updated_at = now()
        WHERE id IN (SELECT DISTINCT experiment_id FROM ${staging}) RETURNING id`,
    );
    overwrittenExperiments = ex.map((e) => e.id);
    const { rows: ep } = await tx.query<{ epoch: string }>(`UPDATE config_epoch SET epoch = epoch + 1 RETURNING epoch::text AS epoch`);
    await tx.query(`SELECT pg_notify($1, $2)`, [CONFIG_CHANNEL, ep[0].epoch]);
    const { rowCount } = await tx.query(
      `${columns}
       SELECT DISTINCT ON (s.experiment_id, s.unit_id) s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
         FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
        ORDER BY s.experiment_id, s.unit_id, s.pos
       ON CONFLICT (experiment_id, unit_id) DO UPDATE
         SET variant = excluded.variant, version = excluded.version, source = excluded.source, assigned_at = now()
         WHERE assignments.source <> ${Source.OVERRIDE}`,
    );
    return { imported: rowCount, overwrittenExperiments };
  }
  const { rowCount } = await tx.query(
    `${columns}
     SELECT s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
       FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
      ORDER BY s.pos
     ON CONFLICT DO NOTHING`,
  );
  return { imported: rowCount, overwrittenExperiments };
}

/**
 * Bulk movement of stored assignments: imports staged (with COPY on PostgreSQL) and merged in one
 * transaction, exports paged by unit id, and copies between experiments in SQL.
 */
export class TransferStore {
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: read through destructuring in beginCopyImport
  private readonly chunkRows: number;
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: read through destructuring in beginCopyImport
  private readonly maxSavepoints: number;

  constructor(
    private readonly db: Database,
    options: TransferStoreOptions = {},
  ) {
    this.chunkRows = options.importChunkRows ?? IMPORT_CHUNK_ROWS;
    this.maxSavepoints = options.maxImportSavepoints ?? MAX_IMPORT_SAVEPOINTS;
  }

  /**
   * Starts an import. On PostgreSQL (PgDatabase): a transaction, COPY FROM STDIN, and a temporary
   * staging table. Elsewhere (PGlite has no COPY stream): see beginUnnestImport. Either way the
   * caller sees the same ImportStaging, and the same all-or-nothing result.
   */
  beginImport(): Promise<ImportStaging> {
    return this.db instanceof PgDatabase ? this.beginCopyImport(this.db) : this.beginUnnestImport();
  }

  /**
   * The fallback for a single-session database (PGlite), where COPY FROM STDIN has no stream:
   * rows are staged by INSERT … SELECT FROM unnest into a temporary table of their own (the one
   * session keeps it between statements), and `commit` merges it into assignments and drops it in
   * one transaction. Staging outside that transaction keeps a slow client from holding the only
   * connection for the whole upload; nothing reaches assignments before the merge commits, so
   * the import is all or nothing exactly as with COPY.
   */
  private async beginUnnestImport(): Promise<ImportStaging> {
    const db = this.db;
    const table = `import_staging_${++stagingTables}`;
    await db.query(`CREATE TEMP TABLE ${table} (pos bigint, experiment_id int, unit_id text, variant smallint)`);
    let done = false;
    let staged = 0;
    const finish = async () => {
      if (done) return;
      done = true;
      await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    };
    return {
      async write(rows) {
        if (done) throw new Error("import already finished");
        for (let i = 0; i < rows.unitIds.length; i += UNNEST_STAGING_ROWS) {
          const end = Math.min(i + UNNEST_STAGING_ROWS, rows.unitIds.length);
          await db.query(
            `INSERT INTO ${table} SELECT $1::bigint + n - 1, e, u, v FROM unnest($2::int[], $3::text[], $4::smallint[]) WITH ORDINALITY AS t(e, u, v, n)`,
            [
              staged + i,
              Array.from(rows.experimentIds.subarray(i, end)),
              rows.unitIds.slice(i, end),
              Array.from(rows.variantIds.subarray(i, end)),
            ],
          );
        }
        staged += rows.unitIds.length;
      },
      async commit(overwrite, wanted) {
        try {
          const result = await db.transaction(async (tx) => {
            const r = await mergeStaged(tx, table, overwrite);
            await tx.query(`DROP TABLE ${table}`);
            if (wanted && !wanted()) throw cancelled("the client cancelled the import; nothing was stored");
            return r;
          });
          done = true;
          return result;
        } finally {
          await finish();
        }
      },
      abort: finish,
    };
  }

  /**
   * Opens a transaction (the import is all or nothing) with a temporary staging table, and stores
   * rows in chunks of IMPORT_CHUNK_ROWS while the upload continues, so storing overlaps decoding:
   * - SKIP_EXISTING into experiments that held no stored assignment when the import first met
   *   them (the usual case: filling a new experiment): each chunk is COPYed straight into
   *   assignments under a savepoint, as fast as a plain COPY. Nothing there can be skipped, unless
   *   a unit comes twice in the import or a page load assigned it meanwhile: then the unique key
   *   fails the COPY, the savepoint undoes it, and that chunk and every later one take the staged
   *   path below. The result is the same either way. After MAX_IMPORT_SAVEPOINTS chunks, the rest
   *   take the staged path too.
   * - Otherwise each chunk is COPYed into the staging table (whose `pos` numbers rows in import
   *   order) and merged at once by INSERT … ON CONFLICT DO NOTHING in that order, so the first row
   *   of a unit counts and stored units are kept.
   * - OVERWRITE stages everything and merges at `commit`: its first-row-wins rule needs the whole
   *   import.
   * `abort` leaves nothing.
   */
  private async beginCopyImport(db: PgDatabase): Promise<ImportStaging> {
    const STAGING = "import_staging";
    let client: pg.PoolClient;
    try {
      client = await db.pool.connect();
    } catch (err) {
      return mapDatabaseError(err);
    }
    let done = false;
    const release = (broken: boolean) => {
      if (done) return;
      done = true;
      client.release(broken);
    };
    try {
      await client.query("BEGIN");
      await client.query(`SET LOCAL work_mem = '256MB'`);
      await client.query(
        `CREATE TEMP TABLE ${STAGING} (pos bigint GENERATED ALWAYS AS IDENTITY, experiment_id int, unit_id text, variant smallint, version bigint, source smallint) ON COMMIT DROP`,
      );
    } catch (err) {
      release(true);
      return mapDatabaseError(err);
    }
    const tx: Queryable = {
      async query<R>(text: string, values?: unknown[]) {
        const r = await client.query(text, values);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
    };
    const copy = async (chunk: readonly Buffer[], into: string) => {
      await pipeline(
        Readable.from(chunk),
        client.query(copyFrom(`COPY ${into} (experiment_id, unit_id, variant, version, source) FROM STDIN`)),
      );
    };

    /** The version of each experiment met so far, as recorded on its imported rows. */
    const versions = new Map<number, string>();
    /** Whether chunks still go straight into assignments (see above); once false, stays false. */
    let direct = true;
    let savepoints = 0;
    const { chunkRows, maxSavepoints } = this;
    let imported = 0;
    let queue: Promise<void> = Promise.resolve();
    let failure: unknown;
    // The chunk being gathered, as COPY text.
    let pending: Buffer[] = [];
    let pendingRows = 0;

    /** Looks up experiments met for the first time: their version, and whether they hold stored
     * assignments already (then nothing more goes straight in). */
    const meet = async (rows: StagedRows) => {
      const unseen = new Set<number>();
      for (const id of rows.experimentIds) if (!versions.has(id)) unseen.add(id);
      if (unseen.size === 0) return;
      await queue; // the connection is busy with earlier chunks until then
      if (failure) return;
      const { rows: found } = await tx.query<{ id: number; version: string; taken: boolean }>(
        `SELECT e.id, e.version::text AS version, EXISTS (SELECT 1 FROM assignments a WHERE a.experiment_id = e.id) AS taken
           FROM experiments e WHERE e.id = ANY($1::int[])`,
        [[...unseen]],
      );
      for (const e of found) {
        versions.set(e.id, e.version);
        if (e.taken) direct = false;
      }
      if (found.length < unseen.size) direct = false; // an unknown id: the staged merge's join leaves it out
    };

    const storeChunk = async (chunk: readonly Buffer[], rows: number) => {
      if (direct && savepoints >= maxSavepoints) direct = false;
      if (direct) {
        savepoints++;
        await tx.query(`SAVEPOINT import_chunk`);
        try {
          await copy(chunk, "assignments");
          await tx.query(`RELEASE SAVEPOINT import_chunk`);
          imported += rows;
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== "23505") throw err;
          await tx.query(`ROLLBACK TO SAVEPOINT import_chunk`);
          direct = false;
        }
      }
      await copy(chunk, STAGING);
      imported += (await mergeStaged(tx, STAGING, false)).imported;
      await tx.query(`TRUNCATE ${STAGING}`);
    };

    /** Hands the gathered chunk to the database; waits while another chunk is still waiting. */
    const flush = async (overwrite: boolean) => {
      if (pendingRows === 0) return;
      const chunk = pending;
      const rows = pendingRows;
      pending = [];
      pendingRows = 0;
      const previous = queue;
      queue = previous
        .then(async () => {
          if (failure) return;
          if (overwrite) await copy(chunk, STAGING);
          else await storeChunk(chunk, rows);
        })
        .catch((err) => void (failure ??= err));
      // One chunk in the database and this one waiting: the caller's next rows are decoded
      // meanwhile, and the database never waits for them.
      await previous;
    };

    return {
      async write(rows: StagedRows, overwrite: boolean): Promise<void> {
        if (failure) return mapDatabaseError(failure);
        if (rows.unitIds.length === 0) return;
        await meet(rows);
        if (failure) return mapDatabaseError(failure);
        pending.push(copyRows(rows, versions)); // built while the database works on the previous chunk
        pendingRows += rows.unitIds.length;
        if (pendingRows >= chunkRows) await flush(overwrite);
        if (failure) return mapDatabaseError(failure);
      },

      async commit(overwrite: boolean, wanted?: () => boolean): Promise<ImportResult> {
        try {
          await flush(overwrite);
          await queue;
          if (failure) throw failure;
          const result = overwrite ? await mergeStaged(tx, STAGING, true) : { imported, overwrittenExperiments: [] };
          if (wanted && !wanted()) throw cancelled("the client cancelled the import; nothing was stored");
          await client.query("COMMIT");
          release(false);
          return result;
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          release(true);
          return mapDatabaseError(err);
        }
      },

      async abort(): Promise<void> {
        if (done) return;
        await queue;
        await client.query("ROLLBACK").catch(() => {});
        release(true);
      },
    };
  }

  /** Every stored assignment of an experiment, ordered by unit id, in batches: one COPY on
   * PostgreSQL, pages of SELECT elsewhere. */
  async *exportBatches(experimentId: number, batchSize: number): AsyncGenerator<ExportedRow[]> {
    if (this.db instanceof PgDatabase) {
      yield* exportByCopy(this.db, experimentId, batchSize);
      return;
    }
    let after: string | undefined;
    for (;;) {
      const rows = await this.exportPage(experimentId, after, batchSize);
      if (rows.length > 0) yield rows.map((r) => ({ unitId: r.unit_id, variant: r.variant, source: r.source, version: r.version }));
      if (rows.length < batchSize) return;
      after = rows[rows.length - 1].unit_id;
    }
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

  async countAssignments(experimentId: number): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM assignments WHERE experiment_id = $1`, [experimentId]);
    return Number(rows[0].n);
  }

  /**
   * Copies one page of the source experiment's rows (after `afterUnit`, by unit id) into the
   * target through `mapping` (source variant id -> target variant id), leaving units the target
   * already has alone. One statement, committed on its own: an interrupted copy resumes by
   * running again.
   */
  async copyPage(
    sourceId: number,
    targetId: number,
    targetVersion: bigint,
    mapping: Map<number, number>,
    afterUnit: string | undefined,
    limit: number,
  ) {
    const { rows } = await this.db.query<{ scanned: string; copied: string; last: string | null }>(
      `WITH src AS (
         SELECT unit_id, variant FROM assignments
          WHERE experiment_id = $1 AND ($6::text IS NULL OR unit_id > $6) ORDER BY unit_id LIMIT $7
       ), ins AS (
         INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT $2, s.unit_id, m.t, $3, ${Source.IMPORT}
           FROM src s JOIN unnest($4::smallint[], $5::smallint[]) AS m(f, t) ON m.f = s.variant
         ON CONFLICT DO NOTHING
         RETURNING 1
       )
       SELECT (SELECT count(*) FROM src) AS scanned, (SELECT count(*) FROM ins) AS copied,
              (SELECT unit_id FROM src ORDER BY unit_id DESC LIMIT 1) AS last`,
      [sourceId, targetId, targetVersion.toString(), [...mapping.keys()], [...mapping.values()], afterUnit ?? null, limit],
    );
    return { scanned: Number(rows[0].scanned), copied: Number(rows[0].copied), last: rows[0].last };
  }
}
