import { isAscii } from "node:buffer";
import { unescapeCopyText } from "./copy-text.js";
import type { BulkCopy, CopySession } from "./database.js";

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
 * reading, holds at most two pages of COPY text (as bytes) and no connection: the connection is held
 * only while the database sends a page, however long the caller takes.
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
  let batch: ExportedRow[] = [];
  for (let page: Buffer | undefined = await read(undefined); page; ) {
    // The next page is read while this one is sent (the database and this process work at once):
    // its cursor, this page's last unit id, is known as soon as this one arrives.
    const last = lastUnitId(page);
    const next = last === undefined ? undefined : read(last);
    // The page stays bytes, decoded a piece at a time (PIECE_BYTES), so that the unit ids (which
    // share the memory of the string they were cut from) never hold a whole page, and no string is
    // large enough to be made outside V8's young generation.
    for (let from = 0; from < page.length; ) {
      const to = pieceEnd(page, from);
      const text = page.toString("utf8", from, to);
      for (let at = 0; at < text.length; ) {
        at = parseRows(text, at, batch, batchSize - batch.length);
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      from = to;
    }
    page = await next;
  }
  if (batch.length > 0) yield batch;
}

const NEWLINE = 0x0a;
const TAB = 0x09;

/** Appends up to `n` rows of COPY text (whole lines), from `at`, to `out`; where it stopped. */
function parseRows(text: string, at: number, out: ExportedRow[], n: number): number {
  let line = at;
  for (let nl = text.indexOf("\n", line); n > 0 && nl >= 0; n--, line = nl + 1, nl = text.indexOf("\n", line)) {
    out.push(parseLine(text, line, text.indexOf("\t", line), nl, true));
  }
  return n > 0 ? text.length : line;
}

/** The row of COPY text whose line is text[line .. end) (`end` its newline), its unit id ending at
 * `idEnd` (the tab after it); `escaped`: whether the unit id may hold escapes to undo. */
function parseLine(text: string, line: number, idEnd: number, end: number, escaped: boolean): ExportedRow {
  const t2 = text.indexOf("\t", idEnd + 1);
  const t3 = text.indexOf("\t", t2 + 1);
  const unitId = text.slice(line, idEnd);
  return new Row(
    escaped ? unescapeCopyText(unitId) : unitId,
    integerAt(text, idEnd + 1, t2),
    integerAt(text, t2 + 1, t3),
    text.slice(t3 + 1, end),
  );
}

/**
 * An exported row, made by a constructor and not by an object literal. V8 watches what each object
 * literal makes (allocation-site pretenuring): when most of what a literal made since the last
 * young-generation collection is still alive at the next (a batch being filled), it may make that
 * literal's objects in the old generation from then on, where each waits for a full collection.
 * About half of the partitioned export's bench:partitions runs went that way: 26 bytes a row
 * promoted against 4 to 6 in the other runs (1 for the unpartitioned export), and twice to three
 * times their collection time; none did with V8's --no-allocation-site-pretenuring, nor with rows
 * made by this constructor (BENCHMARKS.md).
 */
class Row implements ExportedRow {
  unitId: string;
  variant: number;
  source: number;
  version: string;
  constructor(unitId: string, variant: number, source: number, version: string) {
    this.unitId = unitId;
    this.variant = variant;
    this.source = source;
    this.version = version;
  }
}

/** Where the piece of `bytes` that starts at `from` ends: after the last newline within
 * PIECE_BYTES of it (or the first after, for a longer line), or at the end. */
function pieceEnd(bytes: Buffer, from: number): number {
  if (from + PIECE_BYTES >= bytes.length) return bytes.length;
  const nl = bytes.lastIndexOf(NEWLINE, from + PIECE_BYTES - 1);
  return (nl >= from ? nl : bytes.indexOf(NEWLINE, from + PIECE_BYTES)) + 1 || bytes.length;
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

/** Partitions above this many are merged by the database (a page's statement plans every
 * partition, which takes longer the more there are). */
export const MAX_MERGED_PARTITIONS = 64;

/**
 * The same export as exportByCopy (every stored assignment of an experiment, ordered by unit id,
 * in batches; a cursor of pages, each its own snapshot, no connection held between pages), for a
 * table partitioned by unit id whose unit ids compare by their bytes (COLLATE "C"; migration 15):
 * `partitions` are its partitions, as SQL names.
 *
 * An experiment's rows are in every partition. Ordered by unit id in one statement, the database
 * merges one index scan per partition (Merge Append), comparing unit ids at every row: the export
 * cost the database 1.5 to 2.4 times the CPU of the unpartitioned table's single index scan
 * (BENCHMARKS.md). Here each page is a range of unit ids, (cursor, bound], read from the
 * partitioned table without ORDER BY: the database reads each partition's index in its order, one
 * after the other (an Append: no comparison between partitions, no projection, no LIMIT per
 * partition), and this process merges the partitions' runs, which it can because it knows the
 * order: code points (compareCodePoints). The merge moves to the servers, which scale out, from the
 * primary database, which does not.
 *
 * A page's bound is the `share`th unit id after its cursor in one partition (a different one each
 * page), asked for by a small statement of its own (probeBound) as soon as the cursor is known. The
 * other partitions hold about as many unit ids in that range (the partition of a unit id is a hash
 * of it), so a page is about four times `pageRows` rows. When that partition has fewer than
 * `share` rows left, the page reads every row after the cursor: the last page. Since a page's
 * bound does not depend on its rows, the next page is read as soon as this one's bound is known,
 * while this one still arrives (an unpartitioned table's cursor is the last row of the page before,
 * so its pages are read one after another): up to READ_AHEAD_PAGES pages are being read, or wait,
 * while this process merges one. Where a range holds far more rows than a page (partitions unevenly
 * filled there), its COPY stops at a cap (four times a page), and the range is read again in pages
 * whose bound is the smallest of every partition's `share`th unit id, which no partition passes
 * (safeBound), one at a time as they are merged.
 */
export async function* exportByPartitions(
  bulk: BulkCopy,
  experimentId: number,
  batchSize: number,
  partitions: readonly string[],
  pageRows: number = EXPORT_PAGE_ROWS,
): AsyncGenerator<ExportedRow[]> {
  if (!Number.isSafeInteger(experimentId)) throw new TypeError("experimentId must be an integer");
  // Each partition's share of a page: pages of about four times `pageRows`, since each page's
  // statement is planned for every partition (about half a millisecond for 16, which an
  // unpartitioned table's page plans in a fiftieth of that). The first page is a quarter of that:
  // nothing overlaps its read.
  const share = Math.max(1, Math.ceil((PAGE_SIZE_FACTOR * pageRows) / partitions.length));
  const firstShare = Math.max(1, Math.ceil(share / PAGE_SIZE_FACTOR));
  const cap = PAGE_CAP_FACTOR * share * partitions.length;
  let probes = 0;
  // Pages are merged one at a time (a page's PageRuns is made when the merge reaches it): each
  // indexes its page in the arrays the one before used.
  const arrays = new IndexArrays();
  const probe = (after: string | undefined, rows: number) => {
    const bound = probeBound(bulk, experimentId, partitions[probes++ % partitions.length]!, after, rows);
    bound.catch(() => {}); // awaited in turn (see exportByCopy)
    return bound;
  };
  // Pages being read, or read and not yet taken by the merge below: at most READ_AHEAD_PAGES. A
  // page's follower is read as soon as the page's bound (its cursor) is known, while there is room:
  // the database reads the next pages while this process merges, and while the page before still
  // arrives.
  const ahead: Promise<RangePage>[] = [];
  /** The cursor and bound of a page that waits for room to be read. */
  let waiting: { after: string; bound: Promise<string | undefined> } | undefined;
  let stopped = false;
  const read = (after: string | undefined, boundOf: Promise<string | undefined>) => {
    const page = (async () => {
      const bound = await boundOf;
      if (bound !== undefined && !stopped) {
        const follower = { after: bound, bound: probe(bound, share) };
        if (ahead.length < READ_AHEAD_PAGES) read(follower.after, follower.bound);
        else waiting = follower;
      }
      return readRange(bulk, experimentId, partitions, after, bound, share, cap, arrays);
    })();
    page.catch(() => {}); // awaited in turn (see exportByCopy)
    ahead.push(page);
  };
  /** Reads the page that waited for room, if there is room now. */
  const makeRoom = () => {
    const w = waiting;
    if (!w || ahead.length >= READ_AHEAD_PAGES) return;
    waiting = undefined;
    if (!stopped) read(w.after, w.bound);
  };
  read(undefined, probe(undefined, firstShare));
  // Batches are full but the last, across pages.
  let batch: ExportedRow[] = [];
  try {
    for (let next = ahead.shift(); next; next = ahead.shift()) {
      makeRoom();
      const page = await next;
      makeRoom();
      for await (const runs of page.runs()) {
        for (;;) {
          runs.merge(batch, batchSize - batch.length);
          if (batch.length < batchSize) break; // these rows are merged
          yield batch;
          batch = [];
          // A page is several batches, sent without waiting for anything else: the event loop takes
          // a turn between them, so that the next pages' COPY, arriving meanwhile, is read off their
          // connections (else the database waits, its socket full, until this page is sent).
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    }
  } finally {
    stopped = true; // a caller that left asks for no more pages
  }
  if (batch.length > 0) yield batch;
}

/** Pages of exportByPartitions being read, or read ahead of the one being merged (each page is
 * about 40,000 rows, 680 KB of COPY text): two, so that a stalled reader holds at most three
 * pages. */
const READ_AHEAD_PAGES = 2;

/** Pages of exportByPartitions are about this many times `pageRows` (see there). */
const PAGE_SIZE_FACTOR = 4;

/** A page of exportByPartitions holding more rows than this many times its size is read again in
 * smaller ranges (see there). */
const PAGE_CAP_FACTOR = 4;

/** One page of exportByPartitions, read. */
interface RangePage {
  /** Its rows, indexed into runs in order: one set, or, for a range that held too many rows, the
   * sets of smaller ranges, each read as the one before is merged. */
  runs(): AsyncGenerator<PageRuns>;
}

/**
 * The rows after `after` up to `bound` (every row after `after` without one): one COPY when they are
 * fewer than `cap`, else pages up to safeBound, one after another, to `bound`.
 */
async function readRange(
  bulk: BulkCopy,
  experimentId: number,
  partitions: readonly string[],
  after: string | undefined,
  bound: string | undefined,
  share: number,
  cap: number,
  arrays: IndexArrays,
): Promise<RangePage> {
  const text = await copyText(bulk, rangeSql(experimentId, after, bound, cap));
  // Fewer rows than the cap, for sure, when the text is shorter than the cap's shortest lines.
  if (text.length < cap * MIN_LINE_BYTES || lines(text) < cap) {
    return {
      async *runs() {
        yield new PageRuns(text, after, bound, arrays);
      },
    };
  }
  return {
    async *runs() {
      // Too many rows in that range: pages up to the bound no partition passes, to `bound`.
      for (let from = after; ; ) {
        const safe = await safeBound(bulk, experimentId, partitions, from, share);
        const to = safe === undefined || (bound !== undefined && compareCodePoints(safe, bound) > 0) ? bound : safe;
        yield new PageRuns(await copyText(bulk, rangeSql(experimentId, from, to)), from, to, arrays);
        if (to === bound) return;
        from = to;
      }
    },
  };
}

/** The shortest line of COPY text of a row: an empty unit id, and one digit in each other column. */
const MIN_LINE_BYTES = "\t0\t1\t0\n".length;

const cursorSql = (after: string | undefined) => (after === undefined ? "" : ` AND unit_id > ${sqlLiteral(after)}`);

/**
 * Every row after the cursor up to `bound` (every row after the cursor without one), at most
 * `cap`. Without ORDER BY: the partitioned table's Append reads each partition's index in order
 * (PageRuns merges whatever runs it finds).
 */
function rangeSql(experimentId: number, after: string | undefined, bound: string | undefined, cap?: number): string {
  const upTo = bound === undefined ? "" : ` AND unit_id <= ${sqlLiteral(bound)}`;
  const limit = cap === undefined ? "" : ` LIMIT ${cap}`;
  return `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${experimentId}${cursorSql(after)}${upTo}${limit}) TO STDOUT`;
}

/** The `rows`th unit id after the cursor in one partition; undefined when it has fewer left. */
async function probeBound(
  bulk: BulkCopy,
  experimentId: number,
  partition: string,
  after: string | undefined,
  rows: number,
): Promise<string | undefined> {
  return onSession(bulk, async (session) => {
    const { rows: found } = await session.query<{ unit_id: string }>(
      `SELECT unit_id FROM ${partition} WHERE experiment_id = $1${after === undefined ? "" : " AND unit_id > $3"} ORDER BY unit_id OFFSET $2 LIMIT 1`,
      after === undefined ? [experimentId, rows - 1] : [experimentId, rows - 1, after],
    );
    return found[0]?.unit_id;
  });
}

/**
 * The smallest of every partition's `share`th unit id after the cursor: no partition has more than
 * `share` rows up to it, so a page up to it holds at most `share` rows of each. Undefined when no
 * partition has that many left (then all that is left is fewer rows than that).
 */
async function safeBound(
  bulk: BulkCopy,
  experimentId: number,
  partitions: readonly string[],
  after: string | undefined,
  share: number,
): Promise<string | undefined> {
  const cursor = cursorSql(after);
  return onSession(bulk, async (session) => {
    const { rows } = await session.query<{ bound: string | null }>(
      `SELECT min(b) AS bound FROM (${partitions
        .map(
          (p) =>
            `SELECT (SELECT unit_id FROM ${p} WHERE experiment_id = ${experimentId}${cursor} ORDER BY unit_id OFFSET ${share - 1} LIMIT 1) AS b`,
        )
        .join(" UNION ALL ")}) s`,
    );
    return rows[0]?.bound ?? undefined;
  });
}

/** Lines of COPY text. */
function lines(text: Buffer): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text[i] === NEWLINE) n++;
  return n;
}

/** Where a PageRuns indexes its page (see there), kept for the next page: room for a page's
 * shortest lines, about 1.5 MB for a page of 40,000 rows, which made anew for each page cost about
 * a fifth of its indexing. */
class IndexArrays {
  /** Where each line starts, and, after the last line's, the end of the text. */
  lineStarts = new Int32Array(1);
  /** Where each line's unit id ends. */
  idEnds = new Int32Array(0);
  /** Each line's sort key. */
  keys = new Float64Array(0);

  /** Makes room for `lines` lines. */
  reserve(lines: number): void {
    if (this.idEnds.length >= lines) return;
    this.lineStarts = new Int32Array(lines + 1);
    this.idEnds = new Int32Array(lines);
    this.keys = new Float64Array(lines);
  }
}

/**
 * The rows of a page of exportByPartitions, merged as they are taken. The page stays the bytes of
 * its COPY text until its rows are sent: it is indexed in typed arrays (where each row's line
 * starts and where its unit id ends), so that a page, while it waits and while it is merged, holds
 * no JavaScript string or object the garbage collector would copy at each of its young-generation
 * collections (a page's text decoded into strings and kept for its merge made each of those
 * collections cost three times as much as the unpartitioned export's, whose strings live for a
 * batch). Each row gets a sort key, a number made of the bytes of its unit id after the prefix
 * every unit id of the page shares (seven bytes of ASCII, or six of UTF-8, whose byte order is the
 * order of code points; a unit id that ends sorts first): two keys in order are two unit ids in that
 * order, equal keys are compared byte by byte. The rows are cut into runs where the key goes down: a
 * partition's rows, in its index order (two partitions' rows are one run where the second starts
 * above the first's end, which merges the same). The merge takes the smallest head of the runs with
 * a tournament (a loser tree: one comparison of numbers per level, four for 16 partitions). A run's
 * rows are decoded as the merge reaches them, DECODED_ROWS at a time, into one short string each
 * run holds until its rows are sent. Were the page in another order (the database is not bound to
 * read the partitions one after the other), it would be cut into more, shorter runs, and merged the
 * same, more slowly.
 */
class PageRuns {
  private readonly bytes: Buffer;
  /** Where each row's line starts, and, after the last row's, the end of the text. */
  private readonly lineStarts: Int32Array;
  /** Where each row's unit id ends: the tab after it. */
  private readonly idEnds: Int32Array;
  /** Each row's sort key (see the constructor). */
  private readonly keys: Float64Array;
  /** Whether a unit id holds a COPY escape (a backslash): keys are then all 0, and every
   * comparison is of the decoded strings. */
  private readonly escaped: boolean;
  /** Whether the text is ASCII: then a character of a decoded piece is a byte of the text. */
  private readonly ascii: boolean;
  /** The loser tree: tree[0] the run whose next row is the smallest, tree[1 .. leaves - 1] the
   * loser of each match (the leaves, leaves .. 2 leaves - 1, are the runs). */
  private readonly tree: Int32Array;
  private readonly leaves: number;
  /** Each leaf's next row, the row past its last, and its next row's key (Infinity: none left). */
  private readonly at: Int32Array;
  private readonly ends: Int32Array;
  private readonly heads: Float64Array;
  /** Each leaf's rows decoded (ASCII text): the text of rows [at, decodedEnd), from byte decodedFrom. */
  private readonly decoded: string[];
  private readonly decodedFrom: Int32Array;
  private readonly decodedEnd: Int32Array;

  /** `after` and `bound`: the page's range of unit ids, where known; `arrays`: where to index it,
   * which no PageRuns still being merged uses. */
  constructor(bytes: Buffer, after: string | undefined, bound: string | undefined, arrays: IndexArrays) {
    this.bytes = bytes;
    const ascii = isAscii(bytes);
    this.ascii = ascii;
    this.escaped = bytes.indexOf(BACKSLASH) >= 0;
    const length = bytes.length;
    if (length > 0 && bytes[length - 1] !== NEWLINE) throw unexpectedLine(bytes, bytes.lastIndexOf(NEWLINE) + 1);
    // Room for lines as short as they can be (MIN_LINE_BYTES): counting them first cost as much.
    arrays.reserve(Math.floor(length / MIN_LINE_BYTES));
    const { lineStarts, idEnds, keys } = arrays;
    lineStarts[0] = 0; // the first line's start
    const rows = indexLines(bytes, lineStarts, idEnds);
    // Each row's key: the bytes of its unit id after the prefix every unit id of the page shares
    // (every unit id of the page lies between `after` and `bound`: it begins with what they share),
    // as digits of a number below 2 ** 53 (seven digits of 2 ** 7, six of 2 ** 8: exact). An
    // escaped page's keys are all 0.
    if (this.escaped) keys.fill(0, 0, rows);
    else {
      const prefix =
        after !== undefined && bound !== undefined
          ? sharedPrefix(Buffer.from(after), Buffer.from(bound))
          : idPrefix(bytes, lineStarts, idEnds, rows);
      fillKeys(bytes, lineStarts, idEnds, rows, prefix, ascii ? 7 : 6, ascii ? 0x80 : 0x100, keys);
    }
    this.lineStarts = lineStarts;
    this.idEnds = idEnds;
    this.keys = keys;
    const starts = runStarts(keys, rows, (x, y) => this.idBefore(x, y));
    const runs = starts.length;
    let leaves = 2;
    while (leaves < runs) leaves *= 2;
    this.leaves = leaves;
    this.at = new Int32Array(leaves);
    this.ends = new Int32Array(leaves);
    this.heads = new Float64Array(leaves).fill(Number.POSITIVE_INFINITY);
    this.decoded = new Array<string>(leaves).fill("");
    this.decodedFrom = new Int32Array(leaves);
    this.decodedEnd = new Int32Array(leaves);
    for (let k = 0; k < runs; k++) {
      this.at[k] = starts[k]!;
      this.ends[k] = k + 1 < runs ? starts[k + 1]! : rows;
      this.heads[k] = keys[starts[k]!]!;
    }
    // The first round, from the leaves up: winners[n] is the winner of node n's match.
    this.tree = new Int32Array(leaves);
    const winners = new Int32Array(2 * leaves);
    for (let k = 0; k < leaves; k++) winners[leaves + k] = k;
    for (let n = leaves - 1; n >= 1; n--) {
      const l = winners[2 * n]!;
      const r = winners[2 * n + 1]!;
      const rFirst = this.leafBefore(r, l);
      winners[n] = rFirst ? r : l;
      this.tree[n] = rFirst ? l : r;
    }
    this.tree[0] = winners[1]!;
  }

  /** Whether row x's unit id comes before row y's, by code points: by their bytes, or decoded where
   * the page holds escapes. */
  private idBefore(x: number, y: number): boolean {
    const { bytes, lineStarts, idEnds } = this;
    if (this.escaped) return compareCodePoints(this.unitIdOf(x), this.unitIdOf(y)) < 0;
    return bytesBefore(bytes, lineStarts[x]!, idEnds[x]!, lineStarts[y]!, idEnds[y]!);
  }

  /** Whether leaf a's next row comes before leaf b's (a leaf with none left comes after every row). */
  private leafBefore(a: number, b: number): boolean {
    const x = this.heads[a]!;
    const y = this.heads[b]!;
    return x < y || (x === y && x !== Number.POSITIVE_INFINITY && this.idBefore(this.at[a]!, this.at[b]!));
  }

  /** Appends up to `n` of the next rows, in order, to `out`; fewer when the page is merged. */
  merge(out: ExportedRow[], n: number): void {
    const { tree, heads, at, ends } = this;
    const keys = this.keys;
    const leaves = this.leaves;
    for (let m = 0; m < n; m++) {
      const k = tree[0]!;
      const row = at[k]!;
      if (row >= ends[k]!) return; // every run sent
      out.push(this.ascii ? this.decodedRow(k, row) : this.row(row));
      const next = row + 1;
      at[k] = next;
      // The winner's run plays again, from its leaf up, against the losers on its way.
      let winner = k;
      let w = next < ends[k]! ? keys[next]! : Number.POSITIVE_INFINITY;
      heads[k] = w;
      for (let node = (k + leaves) >> 1; node >= 1; node >>= 1) {
        const other = tree[node]!;
        const o = heads[other]!;
        if (o < w || (o === w && o !== Number.POSITIVE_INFINITY && this.idBefore(at[other]!, at[winner]!))) {
          tree[node] = winner;
          winner = other;
          w = o;
        }
      }
      tree[0] = winner;
    }
  }

  /** Row r, the next of leaf k's run, cut from the run's decoded rows (decoded from there on, up to
   * DECODED_ROWS, when they are not). */
  private decodedRow(k: number, r: number): ExportedRow {
    const lineStarts = this.lineStarts;
    if (r >= this.decodedEnd[k]!) {
      const end = Math.min(r + DECODED_ROWS, this.ends[k]!);
      this.decoded[k] = this.bytes.toString("latin1", lineStarts[r]!, lineStarts[end]!);
      this.decodedFrom[k] = lineStarts[r]!;
      this.decodedEnd[k] = end;
    }
    const from = this.decodedFrom[k]!;
    return parseLine(this.decoded[k]!, lineStarts[r]! - from, this.idEnds[r]! - from, lineStarts[r + 1]! - 1 - from, this.escaped);
  }

  /** Row r, decoded alone (UTF-8 text). */
  private row(r: number): ExportedRow {
    const line = this.bytes.toString("utf8", this.lineStarts[r]!, this.lineStarts[r + 1]! - 1);
    return parseLine(line, 0, line.indexOf("\t"), line.length, this.escaped);
  }

  private unitIdOf(r: number): string {
    return unescapeCopyText(this.bytes.toString("utf8", this.lineStarts[r]!, this.idEnds[r]!));
  }
}

/** Rows of a run of PageRuns decoded at once: one string of about 1 KB, which lives until they are
 * sent (cut from a string of a whole page, a row cost several times as much; decoded alone, five). */
const DECODED_ROWS = 64;

/**
 * Where each line of COPY text starts (`lineStarts`, and, after the last, the end of the text) and
 * where its unit id ends (`idEnds`: the tab after it); the number of lines. Functions of their own
 * with nothing after their loops (this one, idPrefix, fillKeys): a loop's optimized code (compiled
 * while it runs, on the stack) was thrown away at the end of every page where code after it needed
 * type feedback it had not seen yet.
 */
function indexLines(bytes: Buffer, lineStarts: Int32Array, idEnds: Int32Array): number {
  const length = bytes.length;
  let row = 0;
  for (let i = 0; i < length; row++) {
    if (row === idEnds.length) throw unexpectedLine(bytes, i); // lines shorter than a row's shortest
    let tab = i;
    for (let c = bytes[tab]; c !== TAB; c = bytes[++tab]) if (c === NEWLINE || tab >= length) throw unexpectedLine(bytes, i);
    idEnds[row] = tab;
    i = tab + 1;
    while (bytes[i] !== NEWLINE) i++; // the text ends with one
    i++;
    lineStarts[row + 1] = i;
  }
  return row;
}

/** The length of the prefix the unit ids of the lines share. */
function idPrefix(bytes: Buffer, lineStarts: Int32Array, idEnds: Int32Array, rows: number): number {
  let prefix = rows > 0 ? idEnds[0]! : 0;
  for (let r = 1; r < rows && prefix > 0; r++) {
    const start = lineStarts[r]!;
    const n = Math.min(prefix, idEnds[r]! - start);
    let l = 0;
    while (l < n && bytes[start + l] === bytes[l]) l++;
    prefix = l;
  }
  return prefix;
}

/** Each line's sort key: the `digits` bytes of its unit id after `prefix` bytes, as digits of a
 * number in `base` (no NUL in text: an ended unit id, 0, sorts first). */
function fillKeys(
  bytes: Buffer,
  lineStarts: Int32Array,
  idEnds: Int32Array,
  rows: number,
  prefix: number,
  digits: number,
  base: number,
  keys: Float64Array,
): void {
  for (let r = 0; r < rows; r++) {
    const end = idEnds[r]!;
    let key = 0;
    for (let d = 0, at = lineStarts[r]! + prefix; d < digits; d++, at++) key = key * base + (at < end ? bytes[at]! : 0);
    keys[r] = key;
  }
}

/** Where each run of rows starts: where the key goes down (or, equal, the unit id: `before`). */
function runStarts(keys: Float64Array, rows: number, before: (x: number, y: number) => boolean): number[] {
  const starts: number[] = [];
  if (rows > 0) starts.push(0);
  for (let r = 1; r < rows; r++) {
    const a = keys[r]!;
    const b = keys[r - 1]!;
    if (a < b || (a === b && before(r, r - 1))) starts.push(r);
  }
  return starts;
}

/**
 * Whether bytes [xs, xe) come before bytes [ys, ye) (a proper prefix first), compared here rather
 * than by Buffer's compare: equal keys are common where a page's unit ids share little (ids of
 * several forms, `new-…` and `unit-…`: the seven bytes after a short prefix tie for many rows),
 * and the calls of that native function, mostly the crossing into C++, cost more than the merge
 * itself (in a whole bench run's profile, 760 ms of the partitioned export's worker against 607 ms).
 */
function bytesBefore(bytes: Uint8Array, xs: number, xe: number, ys: number, ye: number): boolean {
  const n = Math.min(xe - xs, ye - ys);
  for (let i = 0; i < n; i++) {
    const a = bytes[xs + i]!;
    const b = bytes[ys + i]!;
    if (a !== b) return a < b;
  }
  return xe - xs < ye - ys;
}

/** The length of the prefix two byte strings share. */
function sharedPrefix(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  let l = 0;
  while (l < n && a[l] === b[l]) l++;
  return l;
}

const BACKSLASH = 0x5c;

function unexpectedLine(bytes: Buffer, at: number): Error {
  return new Error(`unexpected line in an export's COPY text: ${JSON.stringify(bytes.toString("utf8", at, at + 100))}`);
}

/** The most bytes of COPY text decoded into one string. A string of a whole page (about 500 KB)
 * is allocated outside V8's young generation and cost 2.7 ms a page to make (as much as the merge);
 * pieces of 32 KB cost 0.1 ms. A unit id cut from a piece holds that piece only. */
const PIECE_BYTES = 32 * 1024;

/** The integer written (in decimal, maybe negative) at s[from .. to). */
function integerAt(s: string, from: number, to: number): number {
  const negative = s.charCodeAt(from) === 0x2d;
  let n = 0;
  for (let i = negative ? from + 1 : from; i < to; i++) n = 10 * n + s.charCodeAt(i) - 0x30;
  return negative ? -n : n;
}

/** A COPY … TO STDOUT read whole, in a read-only transaction, on a connection held only while it
 * is read. The statements read in index order (see readPage), without parallel workers (whose rows
 * would interleave the partitions' runs: exportByPartitions). */
async function copyText(bulk: BulkCopy, sql: string): Promise<Buffer> {
  return onSession(bulk, async (session) => {
    await session.query(
      "BEGIN READ ONLY; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0",
    );
    const chunks: Buffer[] = [];
    for await (const chunk of session.copyTo(sql)) chunks.push(chunk);
    await session.query("COMMIT");
    return Buffer.concat(chunks);
  });
}

/** `work` on a transfer connection of its own, given back when it is done: broken (closed, not
 * reused) when `work` failed, which may have left a statement or a transaction unfinished. */
async function onSession<T>(bulk: BulkCopy, work: (session: CopySession) => Promise<T>): Promise<T> {
  const session = await bulk.session();
  let clean = false;
  try {
    const result = await work(session);
    clean = true;
    return result;
  } finally {
    session.release(!clean);
  }
}
