import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { cancelled } from "../errors.js";
import { escapeCopyText } from "./copy-text.js";
import type { CopySession } from "./database.js";
import { addCounts, type ImportResult, type ImportStaging, mergeStaged, type StagedRows } from "./import-staging.js";
import { isUniqueViolation, rethrowStoreError } from "./pg-errors.js";

export interface CopyImportOptions {
  /** Rows per COPY (and per savepoint). */
  chunkRows: number;
  /** Chunks of one import COPYed straight into assignments, each under its own savepoint. */
  maxSavepoints: number;
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
    const e = rows.experimentIds[i]!;
    if (e !== experiment) {
      experiment = e;
      prefix = `${e}\t`;
      suffixes = [];
    }
    const v = rows.variantIds[i]!;
    text += prefix + escapeCopyText(rows.unitIds[i]!) + (suffixes[v] ??= `\t${v}\t${versions.get(e)}\t${Source.IMPORT}\n`);
  }
  return Buffer.from(text, "utf8");
}

/** Adds the rows of each experiment in `ids` to `counts`, a run of equal ids at a time (an
 * import's rows come grouped by experiment, mostly). */
function countRuns(ids: Int32Array, counts: Map<number, number>): void {
  let start = 0;
  for (let i = 1; i <= ids.length; i++) {
    if (i === ids.length || ids[i] !== ids[start]) {
      const id = ids[start]!;
      counts.set(id, (counts.get(id) ?? 0) + (i - start));
      start = i;
    }
  }
}

/**
 * An import on a COPY session: opens a transaction (the import is all or nothing) with a temporary
 * staging table, and stores rows in chunks of `chunkRows` while the upload continues, so storing
 * overlaps decoding:
 * - SKIP_EXISTING into experiments that held no stored assignment when the import first met
 *   them (the usual case: filling a new experiment): each chunk is COPYed straight into
 *   assignments under a savepoint, as fast as a plain COPY. Nothing there can be skipped, unless
 *   a unit comes twice in the import or a page load assigned it meanwhile: then the unique key
 *   fails the COPY, the savepoint undoes it, and that chunk and every later one take the staged
 *   path below. The result is the same either way. After `maxSavepoints` chunks, the rest take
 *   the staged path too.
 * - Otherwise each chunk is COPYed into the staging table (whose `pos` numbers rows in import
 *   order) and merged at once by INSERT … ON CONFLICT DO NOTHING in that order, so the first row
 *   of a unit counts and stored units are kept.
 * - OVERWRITE stages everything and merges at `commit`: its first-row-wins rule needs the whole
 *   import.
 * `abort` leaves nothing.
 */
export async function beginCopyImport(session: CopySession, options: CopyImportOptions): Promise<ImportStaging> {
  const STAGING = "import_staging";
  let done = false;
  const release = (broken: boolean) => {
    if (done) return;
    done = true;
    session.release(broken);
  };
  try {
    await session.query("BEGIN");
    await session.query(`SET LOCAL work_mem = '256MB'`);
    await session.query(
      `CREATE TEMP TABLE ${STAGING} (pos bigint GENERATED ALWAYS AS IDENTITY, experiment_id int, unit_id text, variant smallint, version bigint, source smallint) ON COMMIT DROP`,
    );
  } catch (err) {
    release(true);
    throw err;
  }
  const copy = (chunk: readonly Buffer[], into: string) =>
    session.copyFrom(`COPY ${into} (experiment_id, unit_id, variant, version, source) FROM STDIN`, chunk);

  /** The version of each experiment met so far, as recorded on its imported rows. */
  const versions = new Map<number, string>();
  /** Whether chunks still go straight into assignments (see above); once false, stays false. */
  let direct = true;
  let savepoints = 0;
  const { chunkRows, maxSavepoints } = options;
  let imported = 0;
  const importedPerExperiment = new Map<number, number>();
  let queue: Promise<void> = Promise.resolve();
  let failure: unknown;
  // The chunk being gathered, as COPY text.
  let pending: Buffer[] = [];
  let pendingRows = 0;
  let pendingCounts = new Map<number, number>(); // rows per experiment id

  /** Looks up experiments met for the first time: their version, and whether they hold stored
   * assignments already (then nothing more goes straight in). */
  const meet = async (rows: StagedRows) => {
    const unseen = new Set<number>();
    for (const id of rows.experimentIds) if (!versions.has(id)) unseen.add(id);
    if (unseen.size === 0) return;
    await queue; // the connection is busy with earlier chunks until then
    if (failure) return;
    const { rows: found } = await session.query<{ id: number; version: string; taken: boolean }>(
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

  const storeChunk = async (chunk: readonly Buffer[], rows: number, counts: ReadonlyMap<number, number>) => {
    if (direct && savepoints >= maxSavepoints) direct = false;
    if (direct) {
      savepoints++;
      await session.query(`SAVEPOINT import_chunk`);
      try {
        await copy(chunk, "assignments");
        await session.query(`RELEASE SAVEPOINT import_chunk`);
        imported += rows;
        addCounts(importedPerExperiment, counts);
        return;
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        await session.query(`ROLLBACK TO SAVEPOINT import_chunk`);
        direct = false;
      }
    }
    await copy(chunk, STAGING);
    const merged = await mergeStaged(session, STAGING, false);
    imported += merged.imported;
    addCounts(importedPerExperiment, merged.importedPerExperiment);
    await session.query(`TRUNCATE ${STAGING}`);
  };

  /** Hands the gathered chunk to the database; waits while another chunk is still waiting. */
  const flush = async (overwrite: boolean) => {
    if (pendingRows === 0) return;
    const chunk = pending;
    const rows = pendingRows;
    const counts = pendingCounts;
    pending = [];
    pendingRows = 0;
    pendingCounts = new Map();
    const previous = queue;
    queue = previous
      .then(async () => {
        if (failure) return;
        if (overwrite) await copy(chunk, STAGING);
        else await storeChunk(chunk, rows, counts);
      })
      .catch((err) => void (failure ??= err));
    // One chunk in the database and this one waiting: the caller's next rows are decoded
    // meanwhile, and the database never waits for them.
    await previous;
  };

  return {
    async write(rows: StagedRows, overwrite: boolean): Promise<void> {
      if (failure) return rethrowStoreError(failure);
      if (rows.unitIds.length === 0) return;
      await meet(rows);
      if (failure) return rethrowStoreError(failure);
      pending.push(copyRows(rows, versions)); // built while the database works on the previous chunk
      pendingRows += rows.unitIds.length;
      countRuns(rows.experimentIds, pendingCounts);
      if (pendingRows >= chunkRows) await flush(overwrite);
      if (failure) return rethrowStoreError(failure);
    },

    async commit(overwrite, wanted, record): Promise<ImportResult> {
      try {
        await flush(overwrite);
        await queue;
        if (failure) throw failure;
        const result = overwrite
          ? await mergeStaged(session, STAGING, true)
          : { imported, importedPerExperiment, overwrittenExperiments: [] };
        if (record) await record(session, result);
        if (wanted && !wanted()) throw cancelled("the client cancelled the import; nothing was stored");
        await session.query("COMMIT");
        release(false);
        return result;
      } catch (err) {
        await session.query("ROLLBACK").catch(() => {});
        release(true);
        return rethrowStoreError(err);
      }
    },

    async abort(): Promise<void> {
      if (done) return;
      await queue;
      await session.query("ROLLBACK").catch(() => {});
      release(true);
    },
  };
}
