/**
 * StreamAssign flow control (proto: "Flow control is end to end: a caller that stops reading stops
 * the server from reading"; assignment-service.ts: at most STREAM_BATCHES_IN_FLIGHT batches are
 * answered ahead of what was sent). The server runs in a child process so that its memory can be
 * read from /proc/<pid>/status.
 *
 * The caller wants to send a cohort of 10,000,000 ids (1,000 batches of 10,000; 400 MB of ids on
 * the wire), writing as fast as the stream takes them (respecting write backpressure), reads the
 * first answer and then pauses. Its writes must stall far before the end of the cohort, the server
 * must stop working (no more rows stored) with only a bounded number of batches answered ahead,
 * and its memory must stay bounded. Then the caller stops writing, reads everything, and every
 * batch it wrote is answered, in order, correctly.
 *
 * No timing is asserted: the pause lasts until neither the writer's count nor the rows stored have
 * moved for a while (a plateau); the assertions are on where things stalled and on memory.
 */
import { toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, StreamAssignResponseSchema, type StreamAssignResponse } from "assignment-client";
import { STREAM_BATCHES_IN_FLIGHT } from "../../src/service/assignment-service.js";
import { specVariant, sql, sleep, type WeightedVariant } from "../grpc/helpers.js";
import { startChildServer, type ChildServer } from "./support/child-server.js";
import { differences, responseAnswers, type StreamRequest } from "./support/streams.js";

let s: ChildServer;
beforeAll(async () => {
  s = await startChildServer({ nodeArgs: ["--expose-gc"] });
});
afterAll(async () => s?.stop());

const BATCH = 10_000;
const COHORT_BATCHES = 1_000; // 10,000,000 ids
const MB = 1024 * 1024;
/** Ids of 40 bytes: the cohort is 400 MB of ids on the wire, and more as decoded strings. */
const unitId = (i: number) => `flow-unit-${String(i).padStart(12, "0")}-${"x".repeat(17)}`;
const batchIds = (b: number) => Array.from({ length: BATCH }, (_, k) => unitId(b * BATCH + k));
const COHORT_WIRE_MB = (COHORT_BATCHES * BATCH * (unitId(0).length + 2)) / MB;

const variants: WeightedVariant[] = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 2500 },
  { key: "c", weight: 2500 },
];

const storedRows = async () =>
  (await sql<{ n: number }>(s.databaseUrl, `SELECT count(*)::int AS n FROM assignments WHERE unit_id LIKE 'flow-unit-%'`))[0].n;
/** What the server holds (after a full collection): heap, plus Buffers and other memory outside it. */
const held = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external;

describe("a caller that stops reading", () => {
  it("stalls the writes and the server's work, with bounded memory; then every batch written is answered, in order", async () => {
    await s.experiments.createExperiment({ key: "flow", variants, status: ExperimentStatus.RUNNING });
    expect(unitId(0).length).toBe(40);

    // Warm up (code paths, pools, caches) with a short stream on other units, read normally.
    const warm: StreamRequest[] = [
      { setup: { experimentKeys: ["flow"] } },
      ...[0, 1, 2].map((b) => ({ unitIds: batchIds(b).map((u) => `warm-${u}`) })),
    ];
    let warmed = 0;
    for await (const _ of s.assignments.streamAssign(
      (async function* () {
        yield* warm;
      })(),
    ))
      warmed++;
    expect(warmed).toBe(3);
    await sleep(200);
    const heldBefore = held(await s.memoryAfterGc());
    const rssBefore = s.rss();

    // The writer: the client's pump takes the next message only once the previous one was
    // written (write() returned true, or 'drain' came), so `accepted` counts the messages the
    // stream took.
    let accepted = 0;
    let stopWriting = false;
    const requests = async function* (): AsyncGenerator<StreamRequest> {
      yield { setup: { experimentKeys: ["flow"] } };
      for (let b = 0; b < COHORT_BATCHES && !stopWriting; b++) {
        yield { unitIds: batchIds(b) };
        accepted++;
      }
    };
    const call = s.assignments.streamAssign(requests(), { timeoutMs: 120_000 });
    // The iterator below reports errors; this keeps one arriving while nobody reads from being an
    // uncaught 'error' event.
    (call as unknown as NodeJS.EventEmitter).on("error", () => {});

    // The reader takes the first answer, then pauses. (It must have started reading: a grpc-js
    // client call that was never read from takes every answer into an unbounded buffer of its own,
    // without pausing the HTTP/2 stream, so the server would never feel the pause.)
    const reader = (call as AsyncIterable<StreamAssignResponse>)[Symbol.asyncIterator]();
    const first = await reader.next();
    expect(first.done).toBe(false);

    // Paused until neither the writer nor the server's work (rows stored) has moved for PLATEAU_MS
    // (at most 30 s, after which the assertions below report where it was).
    const PLATEAU_MS = 1_500;
    const started = Date.now();
    let rssPeak = rssBefore;
    let last = "";
    let since = Date.now();
    for (;;) {
      await sleep(100);
      rssPeak = Math.max(rssPeak, s.rss());
      const now = `${accepted}/${await storedRows()}`;
      if (now !== last) {
        last = now;
        since = Date.now();
      }
      const elapsed = Date.now() - started;
      if (Date.now() - since >= PLATEAU_MS || elapsed > 30_000) break;
    }
    const stalledAt = accepted;
    const answeredWhilePaused = (await storedRows()) / BATCH;
    const heldPaused = held(await s.memoryAfterGc());
    rssPeak = Math.max(rssPeak, s.rss());
    // What the client itself holds: the answer it read, and the answers its stream buffered.
    const clientBuffered = 1 + (call as unknown as { readableLength: number }).readableLength;
    // Answers an HTTP/2 stream window (65,535 bytes by default) holds in transit.
    const answerBytes = toBinary(StreamAssignResponseSchema, first.value).length;
    const inTransit = Math.ceil(65_535 / answerBytes) + 1;
    console.info(
      `flow control: the writer stalled at ${stalledAt}/${COHORT_BATCHES} batches; the server answered ${answeredWhilePaused} ` +
        `(the client holds ${clientBuffered}: ${answeredWhilePaused - clientBuffered} answered ahead of what the client took; ` +
        `allowed ${STREAM_BATCHES_IN_FLIGHT} in flight + ${inTransit} in transit of ${answerBytes} bytes); ` +
        `server memory held (after gc) +${Math.round((heldPaused - heldBefore) / MB)} MB; ` +
        `server RSS ${Math.round(rssBefore / MB)} MB -> peak ${Math.round(rssPeak / MB)} MB (+${Math.round((rssPeak - rssBefore) / MB)} MB); ` +
        `the cohort is ${Math.round(COHORT_WIRE_MB)} MB of ids on the wire`,
    );

    // Flow control: the writes stopped far before the end of the cohort…
    expect(stalledAt).toBeLessThan(COHORT_BATCHES / 10);
    // …and so did the server's work: it answered no batch that was not written, and only
    // STREAM_BATCHES_IN_FLIGHT more than the client took, plus what is in transit.
    expect(answeredWhilePaused).toBeLessThanOrEqual(stalledAt);
    expect(answeredWhilePaused - clientBuffered).toBeLessThanOrEqual(STREAM_BATCHES_IN_FLIGHT + inTransit);
    // Bounded memory. What the server holds because of the paused caller (after a full garbage
    // collection: its read-ahead of requests, the answers not yet sent, and the in-process cache
    // filling up) stays far below what buffering the cohort would take (400 MB of ids on the
    // wire, more as strings).
    expect((heldPaused - heldBefore) / MB).toBeLessThan(150);
    // RSS also counts garbage not yet collected (answering a batch allocates several MB), so its
    // bound is looser; it still stays below the size of the cohort's ids.
    expect((rssPeak - rssBefore) / MB).toBeLessThan(Math.min(COHORT_WIRE_MB, 400));

    // Now the caller stops writing and reads everything: every batch written is answered.
    stopWriting = true;
    const responses: StreamAssignResponse[] = [first.value];
    for (let r = await reader.next(); !r.done; r = await reader.next()) responses.push(r.value);
    const written = accepted;
    expect(written).toBeGreaterThanOrEqual(stalledAt);
    expect(responses.map((r) => Number(r.batch))).toEqual(Array.from({ length: written }, (_, i) => i));
    const mismatches: string[] = [];
    responses.forEach((r, b) => {
      const [col] = responseAnswers(r);
      mismatches.push(
        ...differences(
          batchIds(b),
          col,
          (u) => ({ variantKey: specVariant(u, "flow", variants), reason: Reason.NEW, enrolled: true, stored: true }),
          2,
        ),
      );
    });
    expect(mismatches).toEqual([]);
    expect(await storedRows()).toBe(written * BATCH);
  });
});
