import { unescapeCopyText } from "./copy-text.js";
import type { BulkCopy } from "./database.js";

export interface ExportedRow {
  unitId: string;
  variant: number;
  source: number;
  version: string;
}

/** Rows one COPY of an export reads (one page of the keyset cursor): large enough that the cost of
 * each statement vanishes (a page takes about ten milliseconds), small enough that what a stalled
 * export holds (one or two pages of bytes, about 250 KB each) stays small. */
export const EXPORT_PAGE_ROWS = 10_000;

/** A string as an SQL literal (COPY takes no parameters). The E'' form reads the same whatever
 * standard_conforming_strings says; unit ids hold no U+0000. */
export function sqlLiteral(s: string): string {
  return `E'${s.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/**
 * Every stored assignment of an experiment, ordered by unit id, in batches of `batchSize`, read
 * with COPY … TO STDOUT (several times faster than SELECT, which makes the driver build an object
 * per row) one page of `pageRows` at a time: a keyset cursor (`unit_id > last`) bounds each COPY,
 * which is read whole before its connection is given back. So a caller that reads slowly, or stops
 * reading, holds at most two pages of COPY text (as bytes) and no connection: the connection is held only while
 * the database sends a page, however long the caller takes.
 *
 * Each page is its own snapshot: a row stored before the export began is exported exactly once;
 * one stored while it runs appears if its unit id sorts after the page being read.
 */
export async function* exportByCopy(
  bulk: BulkCopy,
  experimentId: number,
  batchSize: number,
  pageRows: number = EXPORT_PAGE_ROWS,
): AsyncGenerator<ExportedRow[]> {
  if (!Number.isSafeInteger(experimentId)) throw new TypeError("experimentId must be an integer");
  const read = (after: string | undefined) => {
    const page = readPage(bulk, experimentId, after, pageRows);
    page.catch(() => {}); // awaited in turn; this keeps a failure of a page never awaited (the caller left) from being unhandled
    return page;
  };
  const half = Math.ceil(pageRows / 2);
  let batch: ExportedRow[] = [];
  let page = await read(undefined);
  for (;;) {
    // The next page is read while the second half of this one is sent (the database and this
    // process work at once); a reader that stalls earlier holds this page alone.
    const last = lastUnitId(page);
    let next: Promise<Buffer> | undefined;
    const readNext = () => (next ??= last === undefined ? undefined : read(last));
    let rows = 0;
    // The page stays bytes; each piece of a batch is decoded on its own, so that the unit ids (which
    // share the memory of the string they were cut from) never hold a whole page.
    for (let from = 0; from < page.length; ) {
      let to = from;
      let n = 0;
      for (const want = batchSize - batch.length; n < want; n++) {
        const nl = page.indexOf(NEWLINE, to);
        if (nl < 0) break;
        to = nl + 1;
      }
      parseRows(page.toString("utf8", from, to), batch);
      from = to;
      rows += n;
      if (rows >= half) readNext();
      if (batch.length === batchSize) {
        yield batch;
        batch = [];
      }
    }
    const following = readNext();
    if (!following) break;
    page = await following;
  }
  if (batch.length > 0) yield batch;
}

const NEWLINE = 0x0a;
const TAB = 0x09;

/** Appends the rows of COPY text (whole lines) to `out`; with `leading`, each line starts with one
 * more column, skipped. */
function parseRows(text: string, out: ExportedRow[], leading = false): void {
  for (let line = 0, nl = text.indexOf("\n"); nl >= 0; line = nl + 1, nl = text.indexOf("\n", line)) {
    const start = leading ? text.indexOf("\t", line) + 1 : line;
    const t1 = text.indexOf("\t", start);
    const t2 = text.indexOf("\t", t1 + 1);
    const t3 = text.indexOf("\t", t2 + 1);
    out.push({
      unitId: unescapeCopyText(text.slice(start, t1)),
      variant: Number(text.slice(t1 + 1, t2)),
      source: Number(text.slice(t2 + 1, t3)),
      version: text.slice(t3 + 1, nl),
    });
  }
}

/** The unit id of a page's last row; undefined for an empty page. */
function lastUnitId(page: Buffer): string | undefined {
  if (page.length === 0) return undefined;
  const start = page.lastIndexOf(NEWLINE, page.length - 2) + 1;
  return unescapeCopyText(page.toString("utf8", start, page.indexOf(TAB, start)));
}

/**
 * One page of the cursor, as COPY text, on a connection held only while it is read. The page is
 * read in the primary key's order: without statistics (a table just filled by an import, before
 * autovacuum analyzed it) the planner would otherwise fetch every remaining row of the experiment
 * and sort them for each page, 30 times slower.
 */
async function readPage(bulk: BulkCopy, experimentId: number, after: string | undefined, pageRows: number): Promise<Buffer> {
  return copyText(
    bulk,
    `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${experimentId}` +
      `${after === undefined ? "" : ` AND unit_id > ${sqlLiteral(after)}`} ORDER BY unit_id LIMIT ${pageRows}) TO STDOUT`,
  );
}

/**
 * Unit ids in the order of PostgreSQL's "C" collation on UTF-8 text: by code point, which is the
 * order of their UTF-8 bytes. UTF-16 code units (what `<` compares) order code points too, except
 * that a surrogate (half of a code point above U+FFFF) would sort below U+E000–U+FFFF: those two
 * ranges are swapped before comparing.
 */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** Partitions above this many are merged by the database (one statement naming every partition
 * would take longer to plan than it saves). */
export const MAX_MERGED_PARTITIONS = 64;

/**
 * The same export as exportByCopy (every stored assignment of an experiment, ordered by unit id,
 * in batches; a keyset cursor of pages, each its own snapshot, no connection held between pages),
 * for a table partitioned by unit id whose unit ids compare by their bytes (COLLATE "C"; migration
 * 15): `partitions` are its partitions, as SQL names.
 *
 * An experiment's rows are in every partition. Ordered by unit id in one statement, the database
 * merges one index scan per partition (Merge Append), comparing unit ids at every row: the export
 * cost the database 1.5 to 2.4 times the CPU of the unpartitioned table's single index scan
 * (BENCHMARKS.md). Here each page is one COPY of the next rows of every partition, each read in its
 * own index order (an Append: no comparison between partitions), and this process merges them, which
 * it can because it knows the order: code points (compareCodePoints). The merge moves to the
 * servers, which scale out, from the primary database, which does not.
 *
 * A page asks each partition for its share of two pages of rows after the cursor. Of the partitions
 * that gave that many (they have more), the smallest last unit id is the page's bound: every row up
 * to it has been read, from every partition, and is sent, in order; the rows after it are read
 * again by the next page, whose cursor is that bound. A page where no partition gave that many is
 * the last. A reader that stalls holds one page of rows (about two pages of exportByCopy's) and the
 * next, read ahead.
 */
export async function* exportByPartitions(
  bulk: BulkCopy,
  experimentId: number,
  batchSize: number,
  partitions: readonly string[],
  pageRows: number = EXPORT_PAGE_ROWS,
): AsyncGenerator<ExportedRow[]> {
  if (!Number.isSafeInteger(experimentId)) throw new TypeError("experimentId must be an integer");
  // Twice a page's share of each partition: pages of about twice `pageRows`, of which a few percent
  // (the rows after the bound) are read again by the next page; smaller parts made the statements'
  // own cost (one index descent and plan per partition) a third of the database's work.
  const perPartition = Math.ceil((2 * pageRows) / partitions.length);
  const read = (after: string | undefined) => {
    const page = readMergedPage(bulk, experimentId, after, partitions, perPartition);
    page.catch(() => {}); // awaited in turn (see exportByCopy)
    return page;
  };
  let page = await read(undefined);
  // Batches are full but the last, across pages.
  let batch: ExportedRow[] = [];
  for (;;) {
    // The next page is read (and merged) while this one is sent: its bound is known as soon as
    // this one is merged, and the whole page waited for would otherwise leave the database idle
    // while this process merges and sends, and this process idle while the database reads.
    const following = page.bound === undefined ? undefined : read(page.bound);
    const rows = page.rows;
    for (let from = 0; from < rows.length; ) {
      const take = Math.min(batchSize - batch.length, rows.length - from);
      if (batch.length === 0 && take === batchSize) {
        yield rows.slice(from, from + take);
      } else {
        for (let i = from; i < from + take; i++) batch.push(rows[i]!);
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      from += take;
    }
    if (!following) break;
    page = await following;
  }
  if (batch.length > 0) yield batch;
}

interface MergedPage {
  /** In order, up to the bound (included). */
  rows: ExportedRow[];
  /** Where the next page starts (after it); undefined for the last page. */
  bound: string | undefined;
}

/** One page of exportByPartitions: read, then merged. */
async function readMergedPage(
  bulk: BulkCopy,
  experimentId: number,
  after: string | undefined,
  partitions: readonly string[],
  perPartition: number,
): Promise<MergedPage> {
  const cursor = after === undefined ? "" : ` AND unit_id > ${sqlLiteral(after)}`;
  const text = await copyText(
    bulk,
    `COPY (${partitions
      .map(
        (p, k) =>
          `(SELECT ${k}, unit_id, variant, source, version FROM ${p} WHERE experiment_id = ${experimentId}${cursor} ORDER BY unit_id LIMIT ${perPartition})`,
      )
      .join(" UNION ALL ")}) TO STDOUT`,
  );
  // Each partition's rows, in its order. The partition's number leads each line; the lines of one
  // partition come together (an Append reads its parts one after the other), and each run of them
  // is decoded on its own, so that a unit id shares the memory of a part of the page only.
  const groups: ExportedRow[][] = partitions.map(() => []);
  for (let start = 0; start < text.length; ) {
    const tab = text.indexOf(TAB, start);
    const k = Number(text.toString("latin1", start, tab));
    let end = text.indexOf(NEWLINE, tab) + 1;
    // The run: following lines of the same partition (starting with the same number and tab).
    const width = tab + 1 - start;
    while (end < text.length && text.compare(text, start, tab + 1, end, end + width) === 0) end = text.indexOf(NEWLINE, end) + 1;
    parseRows(text.toString("utf8", start, end), groups[k]!, true);
    start = end;
  }
  let bound: string | undefined;
  for (const g of groups) {
    if (g.length === perPartition) {
      const last = g[g.length - 1]!.unitId;
      if (bound === undefined || compareCodePoints(last, bound) < 0) bound = last;
    }
  }
  return { rows: mergeGroups(groups, bound), bound };
}

/** The rows of sorted groups, in order, up to `bound` (included; all when undefined): a k-way merge
 * on a binary heap of the groups' next rows. Where no unit id holds a code point above U+FFFF (no
 * surrogate), UTF-16 order is code point order and the engine's own comparison is used. */
function mergeGroups(groups: ExportedRow[][], bound: string | undefined): ExportedRow[] {
  const astral = groups.some((g) => g.some((r) => SURROGATE.test(r.unitId))) || (bound !== undefined && SURROGATE.test(bound));
  const compare = astral ? compareCodePoints : (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const out: ExportedRow[] = [];
  // heap[i]: a group's next row; from[i]: its group; at[i]: that row's place in the group.
  const heap: ExportedRow[] = [];
  const from: number[] = [];
  const at: number[] = [];
  const swap = (i: number, j: number) => {
    [heap[i], heap[j]] = [heap[j]!, heap[i]!];
    [from[i], from[j]] = [from[j]!, from[i]!];
    [at[i], at[j]] = [at[j]!, at[i]!];
  };
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      let m = i;
      if (l < heap.length && compare(heap[l]!.unitId, heap[m]!.unitId) < 0) m = l;
      if (l + 1 < heap.length && compare(heap[l + 1]!.unitId, heap[m]!.unitId) < 0) m = l + 1;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  groups.forEach((g, k) => {
    if (g.length === 0) return;
    heap.push(g[0]!);
    from.push(k);
    at.push(0);
  });
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
  while (heap.length > 0) {
    const row = heap[0]!;
    if (bound !== undefined && compare(row.unitId, bound) > 0) break;
    out.push(row);
    const g = groups[from[0]!]!;
    const next = at[0]! + 1;
    if (next < g.length) {
      heap[0] = g[next]!;
      at[0] = next;
    } else {
      const last = heap.length - 1;
      swap(0, last);
      heap.pop();
      from.pop();
      at.pop();
    }
    down(0);
  }
  return out;
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** A COPY … TO STDOUT read whole, in a read-only transaction, on a connection held only while it
 * is read. The statements read in index order: see readPage. */
async function copyText(bulk: BulkCopy, sql: string): Promise<Buffer> {
  const session = await bulk.session();
  let clean = false;
  try {
    await session.query("BEGIN READ ONLY; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off");
    const chunks: Buffer[] = [];
    for await (const chunk of session.copyTo(sql)) chunks.push(chunk);
    await session.query("COMMIT");
    clean = true;
    return Buffer.concat(chunks);
  } finally {
    session.release(!clean);
  }
}
