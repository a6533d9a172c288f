/**
 * Helpers shared by the streaming tests (test/streaming). Expected answers come from the SPEC
 * formulas in test/grpc/helpers.ts, never from the server.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  columnAnswers,
  type AssignmentService,
  type Client,
  type ColumnAnswer,
  type StreamAssignRequestSchema,
  type StreamAssignResponse,
} from "assignment-client";

export type StreamRequest = MessageInitShape<typeof StreamAssignRequestSchema>;

export const chunk = <T>(xs: readonly T[], n: number): T[][] =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

/** The requests of one stream: the setup alone first (a message without ids gets no answer),
 * then one message per batch. With `setupWithFirstBatch` the setup rides on the first batch. */
export async function* streamRequests(
  setup: StreamRequest["setup"],
  batches: readonly (readonly string[])[],
  setupWithFirstBatch = false,
): AsyncGenerator<StreamRequest> {
  if (setupWithFirstBatch) {
    yield { setup, unitIds: [...batches[0]] };
    for (const b of batches.slice(1)) yield { unitIds: [...b] };
    return;
  }
  yield { setup };
  for (const b of batches) yield { unitIds: [...b] };
}

/** Runs a whole StreamAssign call and returns every response, in arrival order. */
export async function runStream(
  client: Client<typeof AssignmentService>,
  requests: AsyncIterable<StreamRequest>,
  timeoutMs = 120_000,
): Promise<StreamAssignResponse[]> {
  const out: StreamAssignResponse[] = [];
  for await (const r of client.streamAssign(requests, { timeoutMs })) out.push(r);
  return out;
}

/** Positions where two answer lists differ (capped), for compact assertion messages. */
export function differences<T>(ids: readonly string[], got: readonly T[], want: (u: string, i: number) => T, cap = 5): string[] {
  const out: string[] = [];
  let n = 0;
  for (let i = 0; i < ids.length; i++) {
    const w = want(ids[i], i);
    if (JSON.stringify(got[i]) !== JSON.stringify(w)) {
      if (n++ < cap) out.push(`#${i} ${JSON.stringify(ids[i])}: got ${JSON.stringify(got[i])}, want ${JSON.stringify(w)}`);
    }
  }
  if (n > cap) out.push(`… ${n - cap} more`);
  return out;
}

/** Unpacks every column of a stream response. */
export const responseAnswers = (r: StreamAssignResponse): ColumnAnswer[][] => r.columns.map((c) => columnAnswers(c));
