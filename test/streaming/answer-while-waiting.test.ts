/**
 * StreamAssign answers a batch as soon as it (and every batch before it) is done, also while the
 * server waits for the caller's next message. A caller with a read-ahead of its own smaller than
 * the server's (here: one batch, the strictest) sends a batch, waits for its answer, and only then
 * sends the next; the server must not hold a finished answer back until more batches arrive.
 * Before this rule the server answered only once STREAM_BATCHES_IN_FLIGHT batches were in flight
 * or the input ended, and such a caller waited forever (here: until the wait below gives up).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers, type StreamAssignResponse } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { specVariant, units, type WeightedVariant } from "../grpc/helpers.js";
import type { StreamRequest } from "./support/streams.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const variants: WeightedVariant[] = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
/** Longer than any batch of 100 units takes, however loaded the machine: only a server that holds
 * the answer back reaches it. */
const GIVE_UP_MS = 20_000;

describe("a caller that sends one batch at a time", () => {
  it("gets each batch answered before it sends the next", async () => {
    await t.experiments.createExperiment({ key: "one-at-a-time", variants, status: ExperimentStatus.RUNNING });
    const batches = [0, 1, 2, 3, 4].map((b) => units(`oat-${b}-`, 100));

    // The request stream yields the next batch only once the answer to the previous one arrived.
    let answered: () => void = () => {};
    let answeredCount = 0;
    const requests = async function* (): AsyncGenerator<StreamRequest> {
      yield { setup: { experimentKeys: ["one-at-a-time"] } };
      for (const [b, ids] of batches.entries()) {
        yield { unitIds: ids };
        if (answeredCount <= b) {
          const waited = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), GIVE_UP_MS);
            answered = () => {
              clearTimeout(timer);
              resolve(true);
            };
          });
          if (!waited) throw new Error(`batch ${b} was not answered within ${GIVE_UP_MS} ms while the caller waited for it`);
        }
      }
    };

    const responses: StreamAssignResponse[] = [];
    for await (const r of t.assignments.streamAssign(requests())) {
      responses.push(r);
      answeredCount++;
      answered();
    }

    expect(responses.map((r) => Number(r.batch))).toEqual([0, 1, 2, 3, 4]);
    for (const [b, r] of responses.entries()) {
      const answers = columnAnswers(r.columns[0]!);
      expect(answers.map((a) => a.reason)).toEqual(batches[b]!.map(() => Reason.NEW));
      expect(answers.map((a) => a.variantKey)).toEqual(batches[b]!.map((u) => specVariant(u, "one-at-a-time", variants)));
    }
  });
});
