import { StringDecoder } from "node:string_decoder";
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import { mapDatabaseError, type PgDatabase } from "./pg-database.js";

export interface ExportedRow {
  unitId: string;
  variant: number;
  source: number;
  version: string;
}

const UNESCAPE: Record<string, string> = { "\\": "\\", n: "\n", r: "\r", t: "\t", b: "\b", f: "\f", v: "\v" };

/** COPY text format: undoes the backslash escapes PostgreSQL writes. */
function unescapeCopy(s: string): string {
  return s.includes("\\") ? s.replace(/\\(.)/g, (_, c: string) => UNESCAPE[c] ?? c) : s;
}

/**
 * Every stored assignment of an experiment, ordered by unit id, in batches of `batchSize`,
 * streamed with one COPY … TO STDOUT (several times faster than paging with SELECT, which makes
 * the driver build an object per row). Nothing beyond one batch and the socket's buffers is held:
 * the COPY stream is read only as fast as batches are taken.
 */
export async function* exportByCopy(db: PgDatabase, experimentId: number, batchSize: number): AsyncGenerator<ExportedRow[]> {
  if (!Number.isSafeInteger(experimentId)) throw new TypeError("experimentId must be an integer");
  let client: pg.PoolClient;
  try {
    client = await db.pool.connect();
  } catch (err) {
    return mapDatabaseError(err);
  }
  let broken = false;
  const stream = client.query(
    copyTo(
      `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${experimentId} ORDER BY unit_id) TO STDOUT`,
    ),
  );
  try {
    const decoder = new StringDecoder("utf8");
    let rest = "";
    let batch: ExportedRow[] = [];
    for await (const chunk of stream) {
      const text = rest + decoder.write(chunk as Buffer);
      let start = 0;
      for (let nl = text.indexOf("\n", start); nl >= 0; nl = text.indexOf("\n", start)) {
        const t1 = text.indexOf("\t", start);
        const t2 = text.indexOf("\t", t1 + 1);
        const t3 = text.indexOf("\t", t2 + 1);
        batch.push({
          unitId: unescapeCopy(text.slice(start, t1)),
          variant: Number(text.slice(t1 + 1, t2)),
          source: Number(text.slice(t2 + 1, t3)),
          version: text.slice(t3 + 1, nl),
        });
        start = nl + 1;
        if (batch.length === batchSize) {
          yield batch;
          batch = [];
        }
      }
      rest = text.slice(start);
    }
    if (batch.length > 0) yield batch;
  } catch (err) {
    broken = true;
    return mapDatabaseError(err);
  } finally {
    // A consumer that stops early (cancelled call) leaves the COPY unfinished: that connection
    // cannot be reused.
    if (!stream.readableEnded) broken = true;
    if (broken) stream.destroy();
    client.release(broken);
  }
}
