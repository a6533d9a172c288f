import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { cancelled } from "../errors.js";
import { escapeCopyText } from "./copy-text.js";
import type { CopyIn, CopySession } from "./database.js";
import { addCounts, type ImportResult, type ImportStaging, mergeStaged, type StagedRows } from "./import-staging.js";
import { type PartitionRoute, partitionOf, partitionRoute } from "./partition-route.js";
import { isPartitionConstraintViolation, isUniqueViolation, rethrowStoreError } from "./pg-errors.js";

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
 * repeat, so they are built once per experiment and variant. Split into `parts` texts by
 * `partOf(unitId)` (each part undefined when no row goes there), with the rows of each; a unit's
 * rows all go to one part, in their order.
 */
function copyTexts(rows: StagedRows, versions: ReadonlyMap<number, string>, parts: number, partOf: (unitId: string) => number): RoutedText {
  const texts: string[] = new Array(parts).fill("");
  const counts: number[] = new Array(parts).fill(0);
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
    const unitId = rows.unitIds[i]!;
    const p = partOf(unitId);
    texts[p] += prefix + escapeCopyText(unitId) + (suffixes[v] ??= `\t${v}\t${versions.get(e)}\t${Source.IMPORT}\n`);
    counts[p]!++;
  }
  return { parts: texts.map((t) => (t === "" ? undefined : Buffer.from(t, "utf8"))), rows: counts };
}

/** The rows as one COPY text. */
function copyRows(rows: StagedRows, versions: ReadonlyMap<number, string>): Buffer {
  return copyTexts(rows, versions, 1, () => 0).parts[0] ?? Buffer.alloc(0);
}

/** The rows as COPY text split by the partition of assignments that holds each unit. */
function routedCopyRows(rows: StagedRows, versions: ReadonlyMap<number, string>, route: PartitionRoute): RoutedText {
  return copyTexts(rows, versions, route.modulus, (unitId) => partitionOf(route, unitId));
}

/** One message's COPY text split by partition (routedCopyRows). */
interface RoutedText {
  parts: (Buffer | undefined)[];
  rows: number[];
}

/** Rows per COPY into one partition, at least (but at the end of a chunk), and at most half a
 * partition's share of a chunk (3,125 rows for chunks of 100,000 and 16 partitions): each
 * partition's rows are sent as they gather, so the database stores them while the next messages
 * are decoded, and each COPY's fixed cost (the statement, the event trigger with its transition
 * table, a round trip) stays small beside its rows'. At 1,024 an import of 100,000 rows made about
 * 100 COPYs, and the database spent 0.85–1.05× the CPU of the unpartitioned table's single COPY per
 * row; at 3,125, about 32, and 0.98–1.18× (BENCHMARKS.md). */
const PARTITION_COPY_MIN_ROWS = 4096;

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

/** The chunk being stored: one COPY, open while the import's messages arrive, or (straight into
 * the partitions) one COPY per partition each time enough of its rows gathered. */
interface Chunk {
  /** Straight into assignments under a savepoint (else into the staging table). */
  direct: boolean;
  /** The open COPY; undefined when the chunk goes straight into the partitions. */
  copy: CopyIn | undefined;
  /** Rows gathered for each partition and not sent yet, and how many (straight into partitions). */
  pending: Buffer[][];
  pendingRows: number[];
  /** A partition's COPY the database refused: the chunk sends nothing more. */
  error: unknown;
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
 * - SKIP_EXISTING: each chunk is COPYed straight into assignments under a savepoint, as fast as a
 *   plain COPY, as long as nothing must be skipped (filling a new experiment, or adding units new
 *   to one that holds some). When a unit is stored already (by a page load, an earlier import,
 *   or earlier in this one), the unique key fails the COPY at that row, the savepoint undoes the
 *   chunk, and that chunk and every later one take the staged path below: the result is the same
 *   either way, and the rows COPYed in vain are at most one chunk's (usually a few: overlapping
 *   units come early). After `maxSavepoints` chunks, the rest take the staged path too.
 *   Where assignments is partitioned (and each partition has the partitioned table's triggers:
 *   partition-route.ts), the chunk's rows are COPYed into the partition that holds each: a COPY
 *   into the partitioned table would store them one at a time (PostgreSQL does not batch the
 *   inserts into a partitioned table with a transition-table trigger, the event log's), one into a
 *   partition batches them; each partition's trigger writes the outbox (migration 17). Should the
 *   database ever place a row elsewhere than computed here, the chunk is undone and staged, and the
 *   import goes on through the partitioned table.
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
  /** The partitions to COPY straight into (see above); undefined: into assignments itself. */
  let route: PartitionRoute | undefined;
  try {
    route = await partitionRoute(session);
  } catch (err) {
    release(true);
    throw err;
  }

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
  /** Messages queued whose `store` has not started. */
  let queuedMessages = 0;
  let waitingRows = 0;

  const openChunk = async (): Promise<Chunk> => {
    if (direct && savepoints >= maxSavepoints) direct = false;
    const straight = direct && !overwriting;
    if (straight) {
      savepoints++;
      await session.query(`SAVEPOINT import_chunk`);
    }
    const partitions = straight && route ? route.modulus : 0;
    return {
      direct: straight,
      copy: partitions > 0 ? undefined : session.copyIn(`COPY ${straight ? "assignments" : STAGING} ${COLUMNS} FROM STDIN`),
      pending: Array.from({ length: partitions }, () => []),
      pendingRows: new Array(partitions).fill(0),
      error: undefined,
      texts: [],
      rows: 0,
      counts: new Map(),
    };
  };

  /** Sends the rows gathered for partition `p` of a chunk going straight into the partitions. */
  const flushPartition = async (chunk: Chunk, p: number) => {
    const texts = chunk.pending[p]!;
    chunk.pending[p] = [];
    chunk.pendingRows[p] = 0;
    if (chunk.error || texts.length === 0) return;
    try {
      await session.copyFrom(`COPY ${route!.names[p]} ${COLUMNS} FROM STDIN`, texts);
    } catch (err) {
      chunk.error = err;
    }
  };

  /** Ends the open chunk's COPY and stores it (see above). */
  const finishChunk = async () => {
    const chunk = current;
    if (!chunk) return;
    current = undefined;
    if (chunk.direct) {
      try {
        if (chunk.copy) await chunk.copy.end();
        else for (let p = 0; p < chunk.pending.length; p++) await flushPartition(chunk, p);
        if (chunk.error) throw chunk.error;
        await session.query(`RELEASE SAVEPOINT import_chunk`);
        imported += chunk.rows;
        addCounts(importedPerExperiment, chunk.counts);
        return;
      } catch (err) {
        const misrouted = !chunk.copy && isPartitionConstraintViolation(err);
        if (!isUniqueViolation(err) && !misrouted) throw err;
        await session.query(`ROLLBACK TO SAVEPOINT import_chunk`);
        direct = false;
        if (misrouted) route = undefined;
        await session.copyFrom(`COPY ${STAGING} ${COLUMNS} FROM STDIN`, chunk.texts);
      }
    } else {
      await chunk.copy!.end();
    }
    if (overwriting) return; // merged whole at commit
    const merged = await mergeStaged(session, STAGING, false);
    imported += merged.imported;
    addCounts(importedPerExperiment, merged.importedPerExperiment);
    await session.query(`TRUNCATE ${STAGING}`);
  };

  /** One message's rows into the open chunk (opened if none is). */
  const store = async (text: Buffer | RoutedText, rows: number, counts: ReadonlyMap<number, number>) => {
    queuedMessages--;
    current ??= await openChunk();
    const chunk = current;
    chunk.rows += rows;
    addCounts(chunk.counts, counts);
    if (chunk.copy) {
      // Into one COPY: a message split by partition (made while chunks still went straight in)
      // goes into the staging table part after part, each unit's rows still in their order.
      for (const part of Buffer.isBuffer(text) ? [text] : text.parts) {
        if (!part) continue;
        await chunk.copy.write(part);
        if (chunk.direct) chunk.texts.push(part);
      }
    } else {
      // Straight into the partitions: a message not split by partition cannot come here (once
      // chunks stop going straight in, they never do again).
      if (Buffer.isBuffer(text)) throw new Error("copy-import: an unrouted message in a chunk going to the partitions");
      for (let p = 0; p < text.parts.length; p++) {
        const part = text.parts[p];
        if (!part) continue;
        chunk.texts.push(part);
        chunk.pending[p]!.push(part);
        chunk.pendingRows[p]! += text.rows[p]!;
      }
      // The partition with the most rows gathered goes first, once it has enough for a COPY, and
      // the next while no other message waits for the connection: the database stores rows from
      // the second message or so on, instead of idling until a partition filled up, and a COPY
      // grows with what gathered while the last one ran when messages come faster than it stores.
      const minRows = Math.max(1, Math.min(PARTITION_COPY_MIN_ROWS, Math.ceil(chunkRows / chunk.pending.length / 2)));
      while (!chunk.error) {
        let p = 0;
        for (let q = 1; q < chunk.pendingRows.length; q++) if (chunk.pendingRows[q]! > chunk.pendingRows[p]!) p = q;
        if (chunk.pendingRows[p]! < minRows) break;
        await flushPartition(chunk, p);
        if (queuedMessages > 0) break;
      }
    }
    // A COPY the database refused (a unit stored twice) is finished at once: the rest take the
    // staged path without being sent to a COPY that drops them.
    if (chunk.rows >= chunkRows || chunk.copy?.failed || chunk.error) await finishChunk();
  };

  /** Looks up experiments met for the first time: their version. The open chunk ends first: the
   * connection cannot query while it COPYs. */
  const meet = async (rows: StagedRows) => {
    const unseen = new Set<number>();
    for (const id of rows.experimentIds) if (!versions.has(id)) unseen.add(id);
    if (unseen.size === 0) return;
    await enqueue(async () => {
      await finishChunk();
      const { rows: found } = await session.query<{ id: number; version: string }>(
        `SELECT e.id, e.version::text AS version
           FROM experiments e WHERE e.id = ANY($1::int[])`,
        [[...unseen]],
      );
      for (const e of found) {
        versions.set(e.id, e.version);
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
      // Built while the database works on earlier messages; split by partition while chunks go
      // straight in.
      const text = route && direct && !overwrite ? routedCopyRows(rows, versions, route) : copyRows(rows, versions);
      const counts = new Map<number, number>();
      countRuns(rows.experimentIds, counts);
      const n = rows.unitIds.length;
      queuedMessages++;
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
        if (!current?.copy) await session.query("ROLLBACK").catch(() => {});
        release(true);
        return rethrowStoreError(err);
      }
    },

    async abort(): Promise<void> {
      if (done) return;
      await queue;
      if (!current?.copy) await session.query("ROLLBACK").catch(() => {});
      release(true);
    },
  };
}
