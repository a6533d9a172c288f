import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { cancelled } from "../errors.js";
import { escapeCopyText } from "./copy-text.js";
import type { CopyIn, CopySession } from "./database.js";
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

/** The chunk being stored: one COPY, open while the import's messages arrive. */
interface Chunk {
  /** Straight into assignments under a savepoint (else into the staging table). */
  direct: boolean;
  copy: CopyIn;
  /** Its COPY text so far, kept while it goes straight in: a unique violation undoes the chunk,
   * which is then staged from this. */
  texts: Buffer[];
  rows: number;
  counts: Map<number, number>; // rows per experiment id
}

/**
 * An import on a COPY session: opens a transaction (the import is all or nothing) with a temporary
 * staging table, and stores rows in chunks of `chunkRows`, each one COPY fed message by message
 * as the upload arrives, so the database stores rows while the next ones are decoded:
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
 * The connection's work runs in order on a queue; `write` returns while up to a chunk of rows
 * waits there (a merge in the database overlaps the decoding of what follows). `abort` leaves
 * nothing.
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
  const COLUMNS = "(experiment_id, unit_id, variant, version, source)";

  /** The version of each experiment met so far, as recorded on its imported rows. */
  const versions = new Map<number, string>();
  /** Whether chunks still go straight into assignments (see above); once false, stays false. */
  let direct = true;
  let savepoints = 0;
  const { chunkRows, maxSavepoints } = options;
  let imported = 0;
  const importedPerExperiment = new Map<number, number>();
  let overwriting = false;
  let current: Chunk | undefined;
  let failure: unknown;
  /** The connection's work, in order; a task after a failure does nothing. */
  let queue: Promise<void> = Promise.resolve();
  const enqueue = (task: () => Promise<void>): Promise<void> =>
    (queue = queue.then(() => (failure ? undefined : task())).catch((err) => void (failure ??= err)));
  /** Messages queued and not yet in the database, oldest first. */
  const waiting: { stored: Promise<void>; rows: number }[] = [];
  let waitingRows = 0;

  const openChunk = async (): Promise<Chunk> => {
    if (direct && savepoints >= maxSavepoints) direct = false;
    const straight = direct && !overwriting;
    if (straight) {
      savepoints++;
      await session.query(`SAVEPOINT import_chunk`);
    }
    const into = straight ? "assignments" : STAGING;
    return { direct: straight, copy: session.copyIn(`COPY ${into} ${COLUMNS} FROM STDIN`), texts: [], rows: 0, counts: new Map() };
  };

  /** Ends the open chunk's COPY and stores it (see above). */
  const finishChunk = async () => {
    const chunk = current;
    if (!chunk) return;
    current = undefined;
    if (chunk.direct) {
      try {
        await chunk.copy.end();
        await session.query(`RELEASE SAVEPOINT import_chunk`);
        imported += chunk.rows;
        addCounts(importedPerExperiment, chunk.counts);
        return;
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        await session.query(`ROLLBACK TO SAVEPOINT import_chunk`);
        direct = false;
        await session.copyFrom(`COPY ${STAGING} ${COLUMNS} FROM STDIN`, chunk.texts);
      }
    } else {
      await chunk.copy.end();
    }
    if (overwriting) return; // merged whole at commit
    const merged = await mergeStaged(session, STAGING, false);
    imported += merged.imported;
    addCounts(importedPerExperiment, merged.importedPerExperiment);
    await session.query(`TRUNCATE ${STAGING}`);
  };

  /** One message's rows into the open chunk (opened if none is). */
  const store = async (text: Buffer, rows: number, counts: ReadonlyMap<number, number>) => {
    current ??= await openChunk();
    const chunk = current;
    await chunk.copy.write(text);
    if (chunk.direct) chunk.texts.push(text);
    chunk.rows += rows;
    addCounts(chunk.counts, counts);
    // A COPY the database refused (a unit stored twice) is finished at once: the rest take the
    // staged path without being sent to a COPY that drops them.
    if (chunk.rows >= chunkRows || chunk.copy.failed) await finishChunk();
  };

  /** Looks up experiments met for the first time: their version, and whether they hold stored
   * assignments already (then nothing more goes straight in). The open chunk ends first: the
   * connection cannot query while it COPYs. */
  const meet = async (rows: StagedRows) => {
    const unseen = new Set<number>();
    for (const id of rows.experimentIds) if (!versions.has(id)) unseen.add(id);
    if (unseen.size === 0) return;
    await enqueue(async () => {
      await finishChunk();
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
    });
  };

  return {
    async write(rows: StagedRows, overwrite: boolean): Promise<void> {
      if (failure) return rethrowStoreError(failure);
      if (rows.unitIds.length === 0) return;
      overwriting = overwrite;
      await meet(rows);
      if (failure) return rethrowStoreError(failure);
      // Built while the database works on earlier messages.
      const text = copyRows(rows, versions);
      const counts = new Map<number, number>();
      countRuns(rows.experimentIds, counts);
      const n = rows.unitIds.length;
      const stored = enqueue(() => store(text, n, counts));
      waiting.push({ stored, rows: n });
      waitingRows += n;
      void stored.then(() => {
        waitingRows -= n;
        waiting.shift();
      });
      // Up to a chunk of rows may wait for the connection; beyond that the caller waits (and
      // with it the upload: backpressure).
      while (waitingRows > chunkRows && waiting.length > 0) await waiting[0]!.stored;
      if (failure) return rethrowStoreError(failure);
    },

    async commit(overwrite, wanted, record): Promise<ImportResult> {
      try {
        await enqueue(finishChunk);
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
        // A COPY still open cannot take a ROLLBACK: the connection is dropped (the database rolls
        // back the transaction of a connection that went away).
        if (!current) await session.query("ROLLBACK").catch(() => {});
        release(true);
        return rethrowStoreError(err);
      }
    },

    async abort(): Promise<void> {
      if (done) return;
      await queue;
      if (!current) await session.query("ROLLBACK").catch(() => {});
      release(true);
    },
  };
}
