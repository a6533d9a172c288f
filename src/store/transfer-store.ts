import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { Database, Queryable } from "./database.js";
import { CONFIG_CHANNEL } from "./experiment-store.js";
import { exportByCopy, type ExportedRow } from "./pg-export.js";
import { mapDatabaseError, PgDatabase } from "./pg-database.js";

/** A row ready for staging: ids already resolved and checked. */
export interface StagedRow {
  position: number;
  experimentId: number;
  unitId: string;
  variantId: number;
}

export interface ImportResult {
  imported: number;
  /** Experiments whose stored values were replaced (OVERWRITE): their caches must move on. */
  overwrittenExperiments: number[];
}

/** COPY text format: backslash, tab, newline and carriage return are escaped. */
function copyText(s: string): string {
  return /[\\\t\n\r]/.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r")) : s;
}

/** An import in progress: rows are staged, then merged into assignments all at once, or not at all. */
export interface ImportStaging {
  /** Stages rows; resolves when more can be taken (backpressure). `overwrite` is the import's
   * policy (known from its first message), the same on every call. */
  write(rows: readonly StagedRow[], overwrite: boolean): Promise<void>;
  /** Merges every staged row in one transaction: the first row of a unit counts; existing units
   * are skipped, or replaced with `overwrite` (overrides never are). */
  commit(overwrite: boolean): Promise<ImportResult>;
  /** Leaves nothing behind. */
  abort(): Promise<void>;
}

/** Rows staged per INSERT … SELECT FROM unnest on the fallback path. */
const UNNEST_STAGING_ROWS = 10_000;
let stagingTables = 0;

/**
 * The merge of an import, inside the caller's transaction: staged rows (table `staging`) into
 * assignments; with `overwrite`, the caches of the experiments touched move on.
 */
async function mergeStaged(tx: Queryable, staging: string, overwrite: boolean): Promise<ImportResult> {
  const columns = `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)`;
  const fresh = `SELECT s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
                   FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id`;
  let imported: number | undefined;
  if (!overwrite) {
    // Fast path: when the experiments imported into hold no stored assignment yet, a plain INSERT
    // (no conflict check per row, about 1.5x faster) stores every row. A unit repeated in the
    // import, or assigned by a page load meanwhile, makes it fail on the unique key: then the
    // savepoint undoes it and the general merge below runs instead. Same result either way.
    const { rows } = await tx.query<{ taken: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM assignments a WHERE a.experiment_id IN (SELECT DISTINCT experiment_id FROM ${staging})) AS taken`,
    );
    if (!rows[0].taken) {
      await tx.query(`SAVEPOINT import_fast`);
      try {
        imported = (await tx.query(`${columns} ${fresh}`)).rowCount;
        await tx.query(`RELEASE SAVEPOINT import_fast`);
      } catch (err) {
        if ((err as { code?: string }).code !== "23505") throw err;
        await tx.query(`ROLLBACK TO SAVEPOINT import_fast`);
      }
    }
  }
  if (imported === undefined) {
    const conflict = overwrite
      ? `ON CONFLICT (experiment_id, unit_id) DO UPDATE
           SET variant = excluded.variant, version = excluded.version, source = excluded.source, assigned_at = now()
           WHERE assignments.source <> ${Source.OVERRIDE}`
      : `ON CONFLICT DO NOTHING`;
    const rows = overwrite
      ? `SELECT DISTINCT ON (s.experiment_id, s.unit_id) s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
           FROM ${staging} s JOIN experiments e ON e.id = s.experiment_id
          ORDER BY s.experiment_id, s.unit_id, s.pos`
      : fresh;
    imported = (await tx.query(`${columns} ${rows} ${conflict}`)).rowCount;
  }
  let overwrittenExperiments: number[] = [];
  if (overwrite) {
    const { rows: ex } = await tx.query<{ id: number }>(
      `UPDATE experiments SET cache_generation = cache_generation + 1, version = version + 1, updated_at = now()
        WHERE id IN (SELECT DISTINCT experiment_id FROM ${staging}) RETURNING id`,
    );
    overwrittenExperiments = ex.map((e) => e.id);
    const { rows: ep } = await tx.query<{ epoch: string }>(`UPDATE config_epoch SET epoch = epoch + 1 RETURNING epoch::text AS epoch`);
    await tx.query(`SELECT pg_notify($1, $2)`, [CONFIG_CHANNEL, ep[0].epoch]);
  }
  return { imported, overwrittenExperiments };
}

/**
 * Bulk movement of stored assignments: imports staged (with COPY on PostgreSQL) and merged in one
 * transaction, exports paged by unit id, and copies between experiments in SQL.
 */
export class TransferStore {
  constructor(private readonly db: Database) {}

  /**
   * Starts an import. On PostgreSQL (PgDatabase): a transaction and a COPY FROM STDIN into a
   * temporary staging table. Elsewhere (PGlite has no COPY stream): see beginUnnestImport. Either
   * way the caller sees the same ImportStaging, and the same all-or-nothing result.
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
    const finish = async () => {
      if (done) return;
      done = true;
      await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    };
    return {
      async write(rows) {
        if (done) throw new Error("import already finished");
        for (let i = 0; i < rows.length; i += UNNEST_STAGING_ROWS) {
          const chunk = rows.slice(i, i + UNNEST_STAGING_ROWS);
          await db.query(`INSERT INTO ${table} SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::smallint[])`, [
            chunk.map((r) => r.position),
            chunk.map((r) => r.experimentId),
            chunk.map((r) => r.unitId),
            chunk.map((r) => r.variantId),
          ]);
        }
      },
      async commit(overwrite) {
        try {
          const result = await db.transaction(async (tx) => {
            const r = await mergeStaged(tx, table, overwrite);
            await tx.query(`DROP TABLE ${table}`);
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
   * Opens a transaction with a temporary staging table. Each `write` COPYs its rows into the
   * staging table and, for SKIP_EXISTING, merges them into assignments right away (still inside
   * the transaction, so the import stays all or nothing) while the next rows arrive: merging
   * overlaps the upload instead of following it. OVERWRITE stages everything and merges at
   * `commit` (its first-row-wins rule needs the whole import). `abort` leaves nothing.
   */
  private async beginCopyImport(db: PgDatabase): Promise<ImportStaging> {
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
        `CREATE TEMP TABLE import_staging (pos bigint, experiment_id int, unit_id text, variant smallint) ON COMMIT DROP`,
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
    let imported = 0;
    let fast: boolean | undefined; // decided on the first chunk: see mergeChunk
    let queue: Promise<void> = Promise.resolve();
    let queued = 0;
    let failure: unknown;

    const stage = async (text: string) => {
      await pipeline(Readable.from([text]), client.query(copyFrom(`COPY import_staging (pos, experiment_id, unit_id, variant) FROM STDIN`)));
    };
    const mergeChunk = async () => {
      // A plain INSERT (no conflict check per row, about 1.5x faster) while the experiments held
      // no stored assignment when the import began; a unit repeated in the import or assigned by
      // a page load meanwhile fails it on the unique key, and the savepoint lets the chunk go
      // through INSERT … ON CONFLICT DO NOTHING instead. The first row of a unit counts either way.
      fast ??= !(
        await tx.query<{ taken: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM assignments a WHERE a.experiment_id IN (SELECT DISTINCT experiment_id FROM import_staging)) AS taken`,
        )
      ).rows[0].taken;
      const insert = `INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
        SELECT s.experiment_id, s.unit_id, s.variant, e.version, ${Source.IMPORT}
          FROM import_staging s JOIN experiments e ON e.id = s.experiment_id`;
      let merged: number | undefined;
      if (fast) {
        await tx.query(`SAVEPOINT import_chunk`);
        try {
          merged = (await tx.query(insert)).rowCount;
          await tx.query(`RELEASE SAVEPOINT import_chunk`);
        } catch (err) {
          if ((err as { code?: string }).code !== "23505") throw err;
          await tx.query(`ROLLBACK TO SAVEPOINT import_chunk`);
        }
      }
      merged ??= (await tx.query(`${insert} ON CONFLICT DO NOTHING`)).rowCount;
      imported += merged;
      await tx.query(`TRUNCATE import_staging`);
    };

    return {
      async write(rows: readonly StagedRow[], overwrite: boolean): Promise<void> {
        if (failure) return mapDatabaseError(failure);
        if (rows.length === 0) return;
        let text = "";
        for (const r of rows) text += `${r.position}\t${r.experimentId}\t${copyText(r.unitId)}\t${r.variantId}\n`;
        queued++;
        queue = queue
          .then(async () => {
            if (failure) return;
            await stage(text);
            if (!overwrite) await mergeChunk();
          })
          .catch((err) => void (failure ??= err))
          .finally(() => void queued--);
        // One chunk in the database, one waiting: the caller's next rows are decoded meanwhile.
        if (queued > 1) await queue;
        if (failure) return mapDatabaseError(failure);
      },

      async commit(overwrite: boolean): Promise<ImportResult> {
        try {
          await queue;
          if (failure) throw failure;
          const result = overwrite ? await mergeStaged(tx, "import_staging", true) : { imported, overwrittenExperiments: [] };
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
