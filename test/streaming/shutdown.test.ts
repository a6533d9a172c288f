/**
 * Graceful shutdown of the real entry point, src/main.ts, in a child process: SIGTERM during
 * streams loses no acknowledged batch (SPEC.md rule 9: an answer is stored before it is sent),
 * new calls are refused while it drains, a stream whose caller keeps writing is ended (not
 * waited on forever), a stream whose caller stopped reading does not hold the process past the
 * grace period, and the process exits with code 0.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, type StreamAssignResponse } from "assignment-client";
import { failure, separateClients, specVariant, sql, sleep, status, type WeightedVariant } from "../grpc/helpers.js";
import { startChildServer, type ChildServer } from "./support/child-server.js";
import { responseAnswers, type StreamRequest } from "./support/streams.js";

let s: ChildServer;
beforeAll(async () => {
  s = await startChildServer({ mode: "main" });
});
afterAll(async () => s?.stop());

const BATCH = 5_000;
/** Far more than either stream gets to send: the callers never end their streams themselves. */
const ENDLESS = 100_000;
/** src/server.ts gives in-flight calls 10 s before cancelling them; the rest is generous slack. */
const EXIT_BOUND_MS = 25_000;

const variants: WeightedVariant[] = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const idsOf = (stream: string, b: number) => Array.from({ length: BATCH }, (_, k) => `${stream}-${b}-${k}`);

/** A stream whose caller writes batches until the call ends. */
function endlessStream(name: string) {
  let written = 0;
  let ended = false;
  const requests = async function* (): AsyncGenerator<StreamRequest> {
    yield { setup: { experimentKeys: ["drain"] } };
    for (let b = 0; b < ENDLESS && !ended; b++) {
      yield { unitIds: idsOf(name, b) };
      written++;
    }
  };
  const call = s.assignments.streamAssign(requests(), { timeoutMs: 60_000 });
  (call as unknown as NodeJS.EventEmitter).on("error", () => {}); // reported by the iterator
  return {
    call,
    iterator: (call as AsyncIterable<StreamAssignResponse>)[Symbol.asyncIterator](),
    written: () => written,
    end: () => (ended = true),
  };
}

/** Reads a stream to its end; returns the answers and the final status (OK when it ended cleanly). */
async function readToEnd(it: AsyncIterator<StreamAssignResponse>, onAnswer: (r: StreamAssignResponse) => void = () => {}) {
  const answers: StreamAssignResponse[] = [];
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      answers.push(r.value);
      onAnswer(r.value);
    }
    return { answers, code: status.OK, details: "" };
  } catch (err) {
    const e = err as { code?: number; details?: string };
    return { answers, code: e.code ?? -1, details: e.details ?? String(err) };
  }
}

describe("SIGTERM during streams", () => {
  it("loses no acknowledged batch, refuses new calls while draining, ends the streams and exits with code 0", async () => {
    await s.experiments.createExperiment({ key: "drain", variants, status: ExperimentStatus.RUNNING });

    // A caller that stopped reading after its first answer: wait until its stream is stuck on
    // flow control (neither its writes nor the rows stored move any more).
    const stuck = endlessStream("stuck");
    const stuckFirst = await stuck.iterator.next();
    expect(stuckFirst.done).toBe(false);
    const rowCount = async () => (await sql<{ n: number }>(s.databaseUrl, `SELECT count(*)::int AS n FROM assignments`))[0].n;
    let last = "";
    let since = Date.now();
    for (const started = Date.now(); Date.now() - started < 20_000 && Date.now() - since < 1_000; ) {
      await sleep(100);
      const now = `${stuck.written()}/${await rowCount()}`;
      if (now !== last) [last, since] = [now, Date.now()];
    }
    expect(stuck.written()).toBeLessThan(ENDLESS);

    // A caller that keeps writing and reading; SIGTERM arrives after its third answer.
    const busy = endlessStream("busy");
    let signalledAt = 0;
    const busyResult = await readToEnd(busy.iterator, (r) => {
      if (r.batch === 2n) {
        signalledAt = Date.now();
        s.signal("SIGTERM");
      }
    });
    busy.end();
    expect(signalledAt).toBeGreaterThan(0);
    const busyWrittenAtEnd = busy.written();

    // While the stuck stream holds the process (grace period), new calls are refused.
    let refusedWhileDraining: number | undefined;
    if (!s.hasExited()) {
      const fresh = separateClients(s.address);
      try {
        refusedWhileDraining = (
          await failure(fresh.assignments.assign({ experimentKey: "drain", unitId: "late-caller" }, { timeoutMs: 5_000 }))
        ).code;
      } finally {
        fresh.assignments.close();
        fresh.experiments.close();
      }
    }

    const exit = await Promise.race([s.exited, sleep(EXIT_BOUND_MS).then(() => undefined)]);
    const exitedAfterMs = Date.now() - signalledAt;
    // The stuck caller now reads what it was sent before the end.
    const stuckResult = await readToEnd(stuck.iterator);
    stuck.end();
    stuckResult.answers.unshift(stuckFirst.value);
    console.info(
      `shutdown: busy stream answered ${busyResult.answers.length} of ${busyWrittenAtEnd} written, ended ${status[busyResult.code]} (${busyResult.details}); ` +
        `stuck stream got ${stuckResult.answers.length} answers, ended ${status[stuckResult.code]}; new call while draining: ${refusedWhileDraining === undefined ? "(process already gone)" : status[refusedWhileDraining]}; ` +
        `process exit ${JSON.stringify(exit)} ${exitedAfterMs} ms after SIGTERM`,
    );

    // The process ends by itself, cleanly.
    expect(exit, `no exit within ${EXIT_BOUND_MS} ms of SIGTERM; output:\n${s.output().slice(-2000)}`).toEqual({ code: 0, signal: null });
    if (refusedWhileDraining !== undefined) expect(status[refusedWhileDraining]).toBe("UNAVAILABLE");

    // The busy stream was ended by the server (its caller never ended it) with a status a
    // caller retries on, after answering batches in order.
    expect(status[busyResult.code]).toBe("UNAVAILABLE");
    expect(busyResult.answers.length).toBeGreaterThanOrEqual(3);
    expect(busyResult.answers.length).toBeLessThanOrEqual(busyWrittenAtEnd);
    for (const [name, result] of [
      ["busy", busyResult],
      ["stuck", stuckResult],
    ] as const) {
      expect(
        result.answers.map((r) => Number(r.batch)),
        name,
      ).toEqual(result.answers.map((_, i) => i));
    }
    expect(stuckResult.code).not.toBe(status.OK);

    // Every acknowledged batch is stored, whole, with the variant it was answered.
    const acknowledged = [
      ...busyResult.answers.map((r) => ({ ids: idsOf("busy", Number(r.batch)), answers: responseAnswers(r)[0] })),
      ...stuckResult.answers.map((r) => ({ ids: idsOf("stuck", Number(r.batch)), answers: responseAnswers(r)[0] })),
    ];
    const ids = acknowledged.flatMap((a) => a.ids);
    const answered = acknowledged.flatMap((a) => a.answers);
    expect(answered.length).toBe(ids.length);
    expect(
      answered.filter((a, i) => a.reason !== Reason.NEW || !a.stored || a.variantKey !== specVariant(ids[i], "drain", variants)),
    ).toEqual([]);
    const rows = await sql<{ unit_id: string; variant: string }>(
      s.databaseUrl,
      `SELECT a.unit_id, v->>'key' AS variant
         FROM unnest($1::text[]) AS u(id)
         JOIN assignments a ON a.unit_id = u.id
         JOIN experiments e ON e.id = a.experiment_id AND e.key = 'drain'
         JOIN LATERAL jsonb_array_elements(e.variants) v ON (v->>'id')::int = a.variant`,
      [ids],
    );
    const stored = new Map(rows.map((r) => [r.unit_id, r.variant]));
    const lost = ids.filter((u, i) => stored.get(u) !== answered[i].variantKey);
    expect(lost.length, `acknowledged but not stored: ${lost.slice(0, 5).join(", ")}`).toBe(0);
  });
});
