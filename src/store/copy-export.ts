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

/** Appends the rows of COPY text (whole lines) to `out`. */
function parseRows(text: string, out: ExportedRow[]): void {
  for (let start = 0, nl = text.indexOf("\n"); nl >= 0; start = nl + 1, nl = text.indexOf("\n", start)) {
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
  const session = await bulk.session();
  let clean = false;
  try {
    await session.query("BEGIN READ ONLY; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off");
    const chunks: Buffer[] = [];
    for await (const chunk of session.copyTo(
      `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${experimentId}` +
        `${after === undefined ? "" : ` AND unit_id > ${sqlLiteral(after)}`} ORDER BY unit_id LIMIT ${pageRows}) TO STDOUT`,
    )) {
      chunks.push(chunk);
    }
    await session.query("COMMIT");
    clean = true;
    return Buffer.concat(chunks);
  } finally {
    // A page that failed halfway may leave its transaction open: that connection is not reused.
    session.release(!clean);
  }
}
