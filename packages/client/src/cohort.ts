import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "./create-client.js";
import type { AssignmentService } from "./gen/assignment/v1/assignment_service_pb.js";
import type { AssignmentColumn, AssignOptions, AssignOptionsSchema } from "./gen/assignment/v1/types_pb.js";
import { MAX_BULK_UNITS, MAX_MATRIX_CELLS } from "./limits.js";

/** Largest batch StreamAssign takes: MAX_BULK_UNITS ids, and at most MAX_MATRIX_CELLS ids x experiments. */
export function maxBatch(experiments: number): number {
  return Math.max(1, Math.min(MAX_BULK_UNITS, Math.floor(MAX_MATRIX_CELLS / Math.max(1, experiments))));
}

export interface CohortOptions {
  experimentKeys: string[];
  unitType?: string;
  options?: MessageInitShape<typeof AssignOptionsSchema> | AssignOptions;
  /** Ids per message; default (and at most) maxBatch(experimentKeys.length). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Deadline of the whole stream in milliseconds; default none (0), whatever the client's default. */
  timeoutMs?: number;
}

/**
 * Assigns a cohort of any size through one StreamAssign call: ids are read from `ids` only as the
 * stream takes them (gRPC flow control end to end: when the server or `onBatch` is slow, reading
 * stops), sent in batches, and each batch's answers are handed to `onBatch` in order, with the ids
 * they answer. Resolves with the number of ids assigned.
 */
export async function assignCohort(
  client: Client<typeof AssignmentService>,
  ids: AsyncIterable<string> | Iterable<string>,
  cohort: CohortOptions,
  onBatch: (ids: string[], columns: AssignmentColumn[]) => void | Promise<void>,
): Promise<number> {
  const size = Math.min(cohort.batchSize ?? Infinity, maxBatch(cohort.experimentKeys.length));
  const sent: string[][] = [];
  async function* requests() {
    yield { setup: { experimentKeys: cohort.experimentKeys, unitType: cohort.unitType ?? "", options: cohort.options } };
    let batch: string[] = [];
    for await (const id of ids) {
      batch.push(id);
      if (batch.length >= size) {
        sent.push(batch);
        yield { unitIds: batch };
        batch = [];
      }
    }
    if (batch.length > 0) {
      sent.push(batch);
      yield { unitIds: batch };
    }
  }
  let assigned = 0;
  for await (const response of client.streamAssign(requests(), { signal: cohort.signal, timeoutMs: cohort.timeoutMs ?? 0 })) {
    const batch = sent.shift();
    if (!batch) throw new Error(`the server answered batch ${response.batch} that was never sent`);
    await onBatch(batch, response.columns);
    assigned += batch.length;
  }
  if (sent.length > 0) throw new Error(`the stream ended with ${sent.length} batches unanswered`);
  return assigned;
}
