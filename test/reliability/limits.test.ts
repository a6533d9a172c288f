/**
 * Limits: what the server does at and past each of its bounds, and that it keeps serving.
 *
 * - Message size: the server receives and sends at most MAX_MESSAGE_BYTES (64 MiB,
 *   packages/client/src/limits.ts, used by src/server.ts for both directions). A request of exactly
 *   64 MiB is read (and refused by validation); one byte more is RESOURCE_EXHAUSTED from grpc-js
 *   before any handler runs; a response that would exceed it is RESOURCE_EXHAUSTED too.
 * - Units per call: 10,000 ids per BulkAssign / StreamAssign message, 100,000 cells per
 *   MatrixAssign, 1,000 experiments per AssignUnit, 100 per stream, 10,000 overrides per call:
 *   the limit is accepted, one more is INVALID_ARGUMENT naming the field and the limit.
 * - 50 concurrent StreamAssign streams on one connection all complete, in order, correctly.
 * - Deadlines: calls with a 1 ms deadline fail DEADLINE_EXCEEDED; the server stays healthy and
 *   whatever such a call stored is right.
 * - Cancellation of a StreamAssign mid-way: the server stops (stored rows stop growing shortly
 *   after), every batch the caller received an answer for is stored, whole, and nothing more is
 *   stored later.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers, type StreamAssignResponse } from "assignment-client";
import { MAX_MESSAGE_BYTES } from "assignment-client/limits";
import { STREAM_BATCHES_IN_FLIGHT } from "../../src/service/assignment-service.js";
import { expectFailure, specVariant, sql, status, storedAssignments, units } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { responseAnswers, type StreamRequest } from "../streaming/support/streams.js";
import { codeName, codeOf, sleep } from "./support/load.js";
import { healthy, rawCall, rawChannel, stringFieldMessage } from "./support/raw.js";

let t: TestServer;
let raw: ReturnType<typeof rawChannel>;
const variants = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
beforeAll(async () => {
  t = await startTestServer();
  raw = rawChannel(t.server.address);
  await t.experiments.createExperiment({ key: "lim", variants, status: ExperimentStatus.RUNNING });
});
afterAll(async () => {
  raw?.close();
  await t?.stop();
});

const MiB = 1024 * 1024;

/** The server answers health checks and a real assignment correctly. */
async function stillServing() {
  expect(await healthy(raw)).toBe(true);
  const a = (await t.assignments.assign({ experimentKey: "lim", unitId: "health-probe", options: { dryRun: true } })).assignment!;
  expect(a.variantKey).toBe(specVariant("health-probe", "lim", variants));
}

describe("maximum message size (64 MiB each way)", () => {
  it("a request of exactly 64 MiB is read; one byte more is RESOURCE_EXHAUSTED, unary and streaming; the server keeps serving", async () => {
    expect(MAX_MESSAGE_BYTES).toBe(64 * MiB);
    // AssignRequest { experiment_key = "aaaa…" }: read and decoded, then refused by validation.
    const atLimit = await rawCall(raw, "/assignment.v1.AssignmentService/Assign", "unary", [stringFieldMessage(1, MAX_MESSAGE_BYTES)]);
    expect([codeName(atLimit.code), atLimit.details.slice(0, 15)]).toEqual(["INVALID_ARGUMENT", "experiment_key:"]);

    const over = stringFieldMessage(1, MAX_MESSAGE_BYTES + 1);
    const unary = await rawCall(raw, "/assignment.v1.AssignmentService/Assign", "unary", [over]);
    expect(codeName(unary.code)).toBe("RESOURCE_EXHAUSTED");
    expect(unary.details).toMatch(/larger than max/i);
    // A stream whose second message is too large: refused the same way.
    const setup = Buffer.from([0x0a, 0x05, 0x0a, 0x03, ...Buffer.from("lim")]); // StreamAssignRequest { setup { experiment_keys: ["lim"] } }
    const stream = await rawCall(raw, "/assignment.v1.AssignmentService/StreamAssign", "bidi_streaming", [
      setup,
      stringFieldMessage(2, MAX_MESSAGE_BYTES + 1),
    ]);
    expect(codeName(stream.code)).toBe("RESOURCE_EXHAUSTED");
    const imp = await rawCall(raw, "/assignment.v1.ExperimentService/ImportAssignments", "client_streaming", [
      stringFieldMessage(2, 80 * MiB),
    ]);
    expect(codeName(imp.code)).toBe("RESOURCE_EXHAUSTED");
    // Our typed client has the same limit on what it sends: refused before it leaves.
    const huge = "u".repeat(500);
    const tooMany = Array.from({ length: 140_000 }, (_, i) => `${huge}${i}`); // ~70 MB of ids
    await expectFailure(t.assignments.matrixAssign({ experimentKeys: ["lim"], unitIds: tooMany }), status.RESOURCE_EXHAUSTED);
    await stillServing();
  });

  it("params are bounded, so even the largest params response stays under 64 MiB", async () => {
    // Before params were bounded, 70 copies of a 1 MB-params experiment in one 10 KB AssignUnit
    // made the server build a response over the limit (and gigabytes with a matrix's legends).
    await expectFailure(
      t.experiments.createExperiment({
        key: "lim-params-1mb",
        variants: [{ key: "a", weight: 10_000, params: { blob: "p".repeat(1_000_000) } }],
      }),
      status.INVALID_ARGUMENT,
      "variants[0].params",
    );
    // The biggest allowed: 16 KiB of params, asked for 1,000 times with include_params.
    await t.experiments.createExperiment({
      key: "lim-params",
      variants: [{ key: "a", weight: 10_000, params: { blob: "p".repeat(16_000) } }],
      status: ExperimentStatus.RUNNING,
    });
    const ok = await t.assignments.assignUnit({
      units: { user_id: "u-1" },
      experimentKeys: Array(1_000).fill("lim-params"),
      options: { includeParams: true },
    });
    expect(ok.assignments.length).toBe(1_000);
    expect(ok.assignments.every((a) => (a.params?.blob as string).length === 16_000)).toBe(true);
    await stillServing();
  });
});

describe("units and experiments per call", () => {
  it("the limit passes, one more is INVALID_ARGUMENT naming the field and the limit", async () => {
    const ids = units("lim-u-", 10_001);
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "lim", unitIds: ids.slice(0, 10_000) })).column!);
    expect(col.length).toBe(10_000);
    await expectFailure(
      t.assignments.bulkAssign({ experimentKey: "lim", unitIds: ids }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "10000",
      "10001",
    );
    await expectFailure(t.assignments.bulkAssign({ experimentKey: "lim", unitIds: [] }), status.INVALID_ARGUMENT, "unit_ids");

    // MatrixAssign: 100,000 cells pass, 100,001 do not (ids x keys, and ids alone).
    const m = await t.assignments.matrixAssign({
      experimentKeys: ["lim", "lim"],
      unitIds: units("lim-m-", 50_000),
      options: { dryRun: true },
    });
    expect(m.columns.map((c) => c.variantIndexes.length)).toEqual([50_000, 50_000]);
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["lim", "lim"], unitIds: units("lim-m-", 50_001) }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "100000",
    );
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["lim"], unitIds: units("lim-m-", 100_001) }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "100000",
    );

    // AssignUnit: 1,000 experiments.
    const keys = Array.from({ length: 1_000 }, (_, i) => `nope-${i}`);
    expect((await t.assignments.assignUnit({ units: { user_id: "u" }, experimentKeys: keys })).assignments.length).toBe(1_000);
    await expectFailure(
      t.assignments.assignUnit({ units: { user_id: "u" }, experimentKeys: [...keys, "one-more"] }),
      status.INVALID_ARGUMENT,
      "experiment_keys",
      "1000",
    );

    // StreamAssign: 10,000 ids a message, 100 experiments a stream.
    const stream = (reqs: StreamRequest[]) =>
      (async () => {
        const out: StreamAssignResponse[] = [];
        for await (const r of t.assignments.streamAssign(
          (async function* () {
            yield* reqs;
          })(),
        ))
          out.push(r);
        return out;
      })();
    expect(
      (await stream([{ setup: { experimentKeys: ["lim"], options: { dryRun: true } } }, { unitIds: ids.slice(0, 10_000) }]))[0].columns[0]
        .variantIndexes.length,
    ).toBe(10_000);
    await expectFailure(
      stream([{ setup: { experimentKeys: ["lim"] } }, { unitIds: ids }]),
      status.INVALID_ARGUMENT,
      "messages[1].unit_ids",
      "10000",
    );
    await expectFailure(
      stream([{ setup: { experimentKeys: Array(101).fill("lim") } }]),
      status.INVALID_ARGUMENT,
      "setup.experiment_keys",
      "100",
    );
    // With 100 experiments, 1,000 ids a message (100,000 cells).
    await expectFailure(
      stream([{ setup: { experimentKeys: Array(100).fill("lim") } }, { unitIds: ids.slice(0, 1_001) }]),
      status.INVALID_ARGUMENT,
      "messages[1].unit_ids",
      "1000",
    );

    // SetOverrides / ClearOverrides: 10,000.
    const overrides = ids.map((u) => ({ unitId: u, variantKey: "a" }));
    await expectFailure(t.experiments.setOverrides({ experimentKey: "lim", overrides }), status.INVALID_ARGUMENT, "overrides", "10000");
    await expectFailure(t.experiments.clearOverrides({ experimentKey: "lim", unitIds: ids }), status.INVALID_ARGUMENT, "unit_ids", "10000");
    await stillServing();
  });
});

describe("refusals quoting huge input", () => {
  it("are delivered (details cut to about 1,000 characters) and the connection keeps serving", async () => {
    // Found by test/reliability/fuzz.test.ts: details over HTTP/2's 64 KB header limit were never
    // sent, the call hung until its deadline and its connection served nothing any more.
    const huge = "x".repeat(300_000);
    const timeoutMs = 10_000;
    const f1 = await expectFailure(
      t.assignments.assignUnit({ units: { [huge]: "u" } }, { timeoutMs }),
      status.INVALID_ARGUMENT,
      'units["xxx',
    );
    await t.experiments.createExperiment({ key: "lim-copy", variants });
    const f2 = await expectFailure(
      (async () => {
        for await (const _ of t.experiments.copyAssignments(
          { sourceExperimentKey: "lim", targetExperimentKey: "lim-copy", variantMapping: { [huge]: "a" } },
          { timeoutMs },
        ));
      })(),
      status.INVALID_ARGUMENT,
      'variant_mapping["xxx',
    );
    const f3 = await expectFailure(
      t.experiments.importAssignments(
        (async function* () {
          yield { rows: [{ experimentKey: "lim", unitId: "u-1", variantKey: huge }] };
        })(),
        { timeoutMs },
      ),
      status.INVALID_ARGUMENT,
      "rows[0]",
    );
    for (const f of [f1, f2, f3]) expect(f.details.length).toBeLessThan(1_100);
    await stillServing();
  });
});

describe("50 concurrent StreamAssign streams", () => {
  it("all complete, answers in order and right, one stored row per unit (a shared batch raced by all 50)", async () => {
    const STREAMS = 50;
    const BATCHES = 5;
    const SIZE = 400;
    const shared = units("lim-shared-", SIZE);
    const batchOf = (s: number, b: number) => (b === 0 ? shared : units(`lim-s${s}-b${b}-`, SIZE));
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: STREAMS }, async (_, s) => {
        const out: StreamAssignResponse[] = [];
        const reqs = async function* (): AsyncGenerator<StreamRequest> {
          yield { setup: { experimentKeys: ["lim"] } };
          for (let b = 0; b < BATCHES; b++) yield { unitIds: batchOf(s, b) };
        };
        for await (const r of t.assignments.streamAssign(reqs(), { timeoutMs: 60_000 })) out.push(r);
        return out;
      }),
    );
    const tookMs = Date.now() - started;
    let news = 0;
    const wrong: string[] = [];
    results.forEach((out, s) => {
      expect(out.map((r) => Number(r.batch))).toEqual([0, 1, 2, 3, 4]);
      out.forEach((r, b) => {
        const ids = batchOf(s, b);
        responseAnswers(r)[0].forEach((a, k) => {
          if (a.variantKey !== specVariant(ids[k], "lim", variants) || !a.stored)
            wrong.push(`stream ${s} batch ${b} ${ids[k]}: ${JSON.stringify(a)}`);
          if (b === 0 && a.reason === Reason.NEW) news++;
          if (b > 0 && a.reason !== Reason.NEW) wrong.push(`stream ${s} batch ${b} ${ids[k]}: ${Reason[a.reason]}`);
        });
      });
    });
    expect(wrong.slice(0, 10)).toEqual([]);
    // The shared batch: each unit NEW exactly once across the 50 streams.
    expect(news).toBe(SIZE);
    const [{ n, distinct }] = await sql<{ n: number; distinct: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n, count(DISTINCT unit_id)::int AS distinct FROM assignments WHERE unit_id LIKE 'lim-s%' OR unit_id LIKE 'lim-shared-%'`,
    );
    expect([n, distinct]).toEqual([SIZE + STREAMS * (BATCHES - 1) * SIZE, SIZE + STREAMS * (BATCHES - 1) * SIZE]);
    console.info(
      `limits: ${STREAMS} concurrent streams x ${BATCHES} batches of ${SIZE} ids (${STREAMS * BATCHES * SIZE} answers) completed in ${tookMs} ms`,
    );
    await stillServing();
  });
});

describe("deadlines", () => {
  it("1 ms deadlines fail DEADLINE_EXCEEDED (unary, stream, 100 at once); the server stays healthy and what was stored is right", async () => {
    const big = units("lim-deadline-", 10_000);
    await expectFailure(t.assignments.bulkAssign({ experimentKey: "lim", unitIds: big }, { timeoutMs: 1 }), status.DEADLINE_EXCEEDED);
    const codes = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        t.assignments.bulkAssign({ experimentKey: "lim", unitIds: units(`lim-dl-${i}-`, 2_000) }, { timeoutMs: 1 }).then(
          () => "OK",
          (err) => codeName(codeOf(err)),
        ),
      ),
    );
    expect(new Set(codes)).toEqual(new Set(["DEADLINE_EXCEEDED"]));
    const streamed = (async () => {
      for await (const _ of t.assignments.streamAssign(
        (async function* () {
          yield { setup: { experimentKeys: ["lim"] } };
          for (let b = 0; b < 50; b++) yield { unitIds: units(`lim-dls-${b}-`, 5_000) };
        })(),
        { timeoutMs: 1 },
      ));
    })();
    await expectFailure(streamed, status.DEADLINE_EXCEEDED);
    await stillServing();
    // Deadlines that expire while the server works (10,000 new units take it tens of ms): each
    // call ends OK or DEADLINE_EXCEEDED, nothing else.
    const midway: Record<string, string> = {};
    for (const ms of [5, 10, 20, 40, 80, 160]) {
      midway[ms] = await t.assignments
        .bulkAssign({ experimentKey: "lim", unitIds: units(`lim-dlm-${ms}-`, 10_000) }, { timeoutMs: ms })
        .then(
          () => "OK",
          (err) => codeName(codeOf(err)),
        );
    }
    expect(
      Object.values(midway).every((c) => c === "OK" || c === "DEADLINE_EXCEEDED"),
      JSON.stringify(midway),
    ).toBe(true);
    await stillServing();
    // The server may have finished some of that work after the callers gave up: whatever it stored
    // is the SPEC variant, and asking again answers it (stored, STICKY or NEW).
    await sleep(500);
    const again = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "lim", unitIds: big })).column!);
    big.forEach((u, k) => expect([again[k].variantKey, again[k].stored], u).toEqual([specVariant(u, "lim", variants), true]));
    const stored = await sql<{ unit_id: string; variant: number }>(
      t.databaseUrl,
      `SELECT unit_id, variant FROM assignments WHERE unit_id LIKE 'lim-dl%' AND unit_id NOT LIKE 'lim-deadline-%'`,
    );
    const ids = new Map((await t.experiments.getExperiment({ key: "lim" })).experiment!.variants.map((v, i) => [v.key, i]));
    const bad = stored.filter((r) => r.variant !== ids.get(specVariant(r.unit_id, "lim", variants)));
    expect(bad).toEqual([]);
    console.info(
      `limits: 102 calls with 1 ms deadlines: all DEADLINE_EXCEEDED; BulkAssign of 10,000 new units by deadline (ms): ${JSON.stringify(midway)}; ` +
        `the server stored ${stored.length} units of calls whose callers had given up, all with the SPEC variant`,
    );
  });
});

describe("cancelling a StreamAssign mid-way", () => {
  it("the server stops: stored rows stop growing, every answered batch is stored whole, nothing is stored later", async () => {
    await t.experiments.createExperiment({ key: "lim-cancel", variants, status: ExperimentStatus.RUNNING });
    const BATCH = 2_000;
    const MAX_BATCHES = 1_000;
    const RECEIVE = 5;
    const idsOf = (b: number) => units(`lim-cancel-${b}-`, BATCH);
    let written = 0;
    const requests = async function* (): AsyncGenerator<StreamRequest> {
      yield { setup: { experimentKeys: ["lim-cancel"] } };
      for (let b = 0; b < MAX_BATCHES; b++) {
        yield { unitIds: idsOf(b) };
        written++;
      }
    };
    const cancel = new AbortController();
    const call = t.assignments.streamAssign(requests(), { timeoutMs: 60_000, signal: cancel.signal });
    (call as unknown as NodeJS.EventEmitter).on("error", () => {});
    const finalStatus = new Promise<number>((resolve) =>
      (call as unknown as NodeJS.EventEmitter).on("status", (s: { code: number }) => resolve(s.code)),
    );
    const received: StreamAssignResponse[] = [];
    for await (const r of call) {
      received.push(r);
      if (received.length === RECEIVE) {
        cancel.abort();
        break;
      }
    }
    const cancelledAt = Date.now();
    const writtenAtCancel = written;
    expect(codeName(await finalStatus)).toBe("CANCELLED");
    expect(received.length).toBe(RECEIVE);

    // Stored rows, polled every 50 ms, until they have not moved for 1 s (at most 15 s).
    const count = async () =>
      (await sql<{ n: number }>(t.databaseUrl, `SELECT count(*)::int AS n FROM assignments WHERE unit_id LIKE 'lim-cancel-%'`))[0].n;
    const atCancel = await count();
    let last = atCancel;
    let lastChange = cancelledAt;
    while (Date.now() - lastChange < 1_000 && Date.now() - cancelledAt < 15_000) {
      await sleep(50);
      const n = await count();
      if (n !== last) [last, lastChange] = [n, Date.now()];
    }
    const plateau = last;
    const settledAfterMs = lastChange - cancelledAt;
    await sleep(1_500);
    const final = await count();

    // Which batches are stored, and whether whole.
    const rows = await storedAssignments(t.databaseUrl, "lim-cancel");
    const perBatch = new Map<number, number>();
    for (const u of rows.keys()) {
      const b = Number(/^lim-cancel-(\d+)-/.exec(u)![1]);
      perBatch.set(b, (perBatch.get(b) ?? 0) + 1);
    }
    const storedBatches = [...perBatch.keys()].sort((a, b) => a - b);
    console.info(
      `limits: cancelled a stream after ${RECEIVE} answers (client had written ${writtenAtCancel} batches of ${BATCH}): ` +
        `${atCancel / BATCH} batches stored at cancellation, ${plateau / BATCH} when rows stopped growing ${settledAfterMs} ms later, ${final / BATCH} 1.5 s after that; ` +
        `stored batches ${storedBatches.join(",")}`,
    );
    expect(Date.now() - cancelledAt < 20_000 && Date.now() - lastChange >= 1_000, "stored rows stopped growing").toBe(true);
    expect(final).toBe(plateau);
    // Every batch answered to the caller is stored, whole, with the variants it was answered.
    received.forEach((r, b) => {
      expect(Number(r.batch)).toBe(b);
      const ids = idsOf(b);
      responseAnswers(r)[0].forEach((a, k) => {
        if (rows.get(ids[k])?.variant !== a.variantKey || a.variantKey !== specVariant(ids[k], "lim-cancel", variants)) {
          throw new Error(`batch ${b} ${ids[k]}: answered ${a.variantKey}, stored ${rows.get(ids[k])?.variant}`);
        }
      });
    });
    // Only whole batches, only batches the caller wrote, and only the few the server had read
    // ahead of the answers it sent (STREAM_BATCHES_IN_FLIGHT, plus what sat in its buffers).
    for (const [b, n] of perBatch) expect(n, `batch ${b}`).toBe(BATCH);
    expect(Math.max(...storedBatches)).toBeLessThan(writtenAtCancel);
    expect(storedBatches.length).toBeLessThanOrEqual(RECEIVE + STREAM_BATCHES_IN_FLIGHT + 4);
    for (const [u, s] of rows) if (s.variant !== specVariant(u, "lim-cancel", variants)) throw new Error(`${u} stored ${s.variant}`);
    await stillServing();
  });
});
