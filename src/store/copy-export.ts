import { StringDecoder } from "node:string_decoder";
import { unescapeCopyText } from "./copy-text.js";
import type { BulkCopy } from "./database.js";

export interface ExportedRow {
  unitId: string;
  variant: number;
  source: number;
  version: string;
}

/**
 * Every stored assignment of an experiment, ordered by unit id, in batches of `batchSize`,
 * streamed with one COPY … TO STDOUT (several times faster than paging with SELECT, which makes
 * the driver build an object per row). Nothing beyond one batch and the socket's buffers is held:
 * the COPY stream is read only as fast as batches are taken.
 */
export async function* exportByCopy(bulk: BulkCopy, experimentId: number, batchSize: number): AsyncGenerator<ExportedRow[]> {
  if (!Number.isSafeInteger(experimentId)) throw new TypeError("experimentId must be an integer");
  const session = await bulk.session();
  try {
    const decoder = new StringDecoder("utf8");
    let rest = "";
    let batch: ExportedRow[] = [];
    for await (const chunk of session.copyTo(
      `COPY (SELECT unit_id, variant, source, version FROM assignments WHERE experiment_id = ${experimentId} ORDER BY unit_id) TO STDOUT`,
    )) {
      const text = rest + decoder.write(chunk);
      let start = 0;
      for (let nl = text.indexOf("\n", start); nl >= 0; nl = text.indexOf("\n", start)) {
        const t1 = text.indexOf("\t", start);
        const t2 = text.indexOf("\t", t1 + 1);
        const t3 = text.indexOf("\t", t2 + 1);
        batch.push({
          unitId: unescapeCopyText(text.slice(start, t1)),
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
  } finally {
    session.release();
  }
}
