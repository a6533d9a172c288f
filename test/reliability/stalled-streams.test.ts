/**
 * Streams whose peer stops reading (or sending) must not take the database connections that page
 * loads need (defect 3: 25 ExportAssignments calls that were never read each held a pooled
 * connection, with its COPY open, and every page load that had to store a new unit then failed
 * UNAVAILABLE after 5 s).
 *
 * 50 exports of a large experiment, each on its own connection (in a process of their own), read
 * one message and then stop reading; meanwhile 4 clients do page loads (AssignUnit with new units,
 * each answer stored) for 20 s. Every page load must succeed with the SPEC's answer, and every
 * answer must be stored.
 * The same load runs first without the stalled exports; the p99 of both runs is printed (timing is
 * reported, never asserted here: the ratio is in RELIABILITY.md).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ImportPolicy, Reason } from "assignment-client";
import { startStalledExports } from "../../harness/stalled-exports.js";
import { specVariant, storedAssignments, type WeightedVariant } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { codeName, codeOf, Mismatches, percentiles, rawClients, startLoad } from "./support/load.js";

const PAGE_LOAD_MS = Number(process.env.STALLED_STREAMS_LOAD_MS ?? 20_000);
const BASELINE_MS = Number(process.env.STALLED_STREAMS_BASELINE_MS ?? 10_000);
const STALLED_EXPORTS = 50;
const PAGE_CLIENTS = 4;
const BIG_ROWS = 200_000;

const pageVariants: Record<string, WeightedVariant[]> = {
  "page-header": [
    { key: "old", weight: 5000 },
    { key: "new", weight: 5000 },
  ],
  "page-price": [
    { key: "p9", weight: 3000 },
    { key: "p10", weight: 3000 },
    { key: "p11", weight: 4000 },
  ],
  "page-layout": [
    { key: "grid", weight: 2500 },
    { key: "list", weight: 7500 },
  ],
};
const pageKeys = Object.keys(pageVariants);

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

interface PageLoadRun {
  latenciesMs: number[];
  failures: Map<string, number>;
  answered: string[];
}

/** 4 clients, each on its own connection, loading pages of new units for `ms`. */
async function pageLoads(address: string, label: string, ms: number, wrong: Mismatches): Promise<PageLoadRun> {
  const clients = Array.from({ length: PAGE_CLIENTS }, () => rawClients(address, 30_000));
  const run: PageLoadRun = { latenciesMs: [], failures: new Map(), answered: [] };
  try {
    const load = startLoad(PAGE_CLIENTS, { maxIterationsPerWorker: 1_000_000, maxMs: ms }, async (w, i) => {
      const unit = `${label}-${w}-${i}`;
      const started = performance.now();
      try {
        const { assignments } = await clients[w]!.assignments.assignUnit({ units: { user_id: unit }, tag: "page" });
        run.latenciesMs.push(performance.now() - started);
        run.answered.push(unit);
        const got = new Map(assignments.map((a) => [a.experimentKey, a]));
        for (const key of pageKeys) {
          const a = got.get(key);
          const want = specVariant(unit, key, pageVariants[key]!);
          if (!a || a.variantKey !== want || a.reason !== Reason.NEW || !a.stored || !a.enrolled) {
            wrong.add(`${unit} ${key}: got ${a ? `${a.variantKey} ${Reason[a.reason]} stored=${a.stored}` : "nothing"}, want ${want} NEW`);
          }
        }
        if (assignments.length !== pageKeys.length) wrong.add(`${unit}: ${assignments.length} answers, want ${pageKeys.length}`);
      } catch (err) {
        const what = `${codeName(codeOf(err))}: ${(err as { details?: string }).details ?? err}`;
        run.failures.set(what, (run.failures.get(what) ?? 0) + 1);
      }
    });
    await load.done;
  } finally {
    for (const c of clients) c.close();
  }
  return run;
}

async function createPageExperiments(server: TestServer) {
  for (const key of pageKeys) {
    await server.experiments.createExperiment({ key, variants: pageVariants[key], tags: ["page"], status: ExperimentStatus.RUNNING });
  }
}

/** Every answered unit is stored in every page experiment, with the variant it was answered. */
async function expectStored(databaseUrl: string, answered: readonly string[]) {
  for (const key of pageKeys) {
    const stored = await storedAssignments(databaseUrl, key);
    const missing = answered.filter((u) => stored.get(u)?.variant !== specVariant(u, key, pageVariants[key]!));
    expect(missing.slice(0, 5), `${key}: ${missing.length} answers not stored as answered`).toEqual([]);
  }
}

const summary = (r: PageLoadRun) => {
  const p = percentiles(r.latenciesMs, [50, 99, 100]);
  return `${r.latenciesMs.length} page loads, p50 ${p.p50!.toFixed(1)} ms, p99 ${p.p99!.toFixed(1)} ms, max ${p.p100!.toFixed(1)} ms`;
};

describe("50 stalled exports beside page loads", () => {
  it("answers every page load, correctly, and stores every answer", { timeout: 180_000 }, async () => {
    await createPageExperiments(t);
    await t.experiments.createExperiment({
      key: "big",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const imported = await t.experiments.importAssignments(
      (async function* () {
        for (let i = 0; i < BIG_ROWS; i += 20_000) {
          const rows = Array.from({ length: 20_000 }, (_, k) => ({
            experimentKey: "big",
            unitId: `big-unit-${String(i + k).padStart(9, "0")}`,
            variantKey: (i + k) % 2 ? "a" : "b",
          }));
          yield i === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows } : { rows };
        }
      })(),
    );
    expect(imported.imported).toBe(BigInt(BIG_ROWS));

    const wrong = new Mismatches();
    // Warm up the paths, then the baseline: the same load without stalled streams.
    await pageLoads(t.server.address, "warm", 1_000, wrong);
    const baseline = await pageLoads(t.server.address, "base", BASELINE_MS, wrong);

    // Each export first sends what its client reads ahead (grpc-js buffers 16 messages, HTTP/2 a
    // window more); the page loads run once that is over.
    const exports = await startStalledExports(t.server.address, STALLED_EXPORTS, "big", 2_000);
    let stalled: PageLoadRun;
    try {
      stalled = await pageLoads(t.server.address, "stalled", PAGE_LOAD_MS, wrong);
    } finally {
      await exports.stop();
    }

    const ratio = percentiles(stalled.latenciesMs, [99]).p99! / percentiles(baseline.latenciesMs, [99]).p99!;
    console.info(
      `stalled streams: without them ${summary(baseline)}; beside ${STALLED_EXPORTS} stalled exports ${summary(stalled)}; p99 ratio ${ratio.toFixed(2)}`,
    );

    expect(Object.fromEntries(baseline.failures)).toEqual({});
    expect(Object.fromEntries(stalled.failures)).toEqual({});
    // Every export was alive and stalled: it had its first batch and was never read again.
    expect({ started: exports.started, failed: exports.failed }).toEqual({ started: STALLED_EXPORTS, failed: [] });
    expect(stalled.answered.length).toBeGreaterThan(0);
    expect(wrong.first).toEqual([]);
    expect(wrong.count).toBe(0);
    await expectStored(t.databaseUrl, [...baseline.answered, ...stalled.answered]);
  });
});

/** A call of a stream whose peer stopped: cancelled at the end of the test. */
type Cancellable = { cancel(): void; on(event: "error", f: () => void): void };

describe("stalled imports, copies and answer streams beside page loads", () => {
  it(
    "take no connection page loads need; an import whose client went quiet is abandoned and stores nothing",
    { timeout: 120_000 },
    async () => {
      // A small pool, so that a handful of stalled streams would take all of it.
      const s = await startTestServer({ databasePoolSize: 4, transferPoolSize: 2, importIdleMs: 3_000 });
      const closers: (() => void)[] = [];
      try {
        await createPageExperiments(s);
        const ab = [
          { key: "a", weight: 5000 },
          { key: "b", weight: 5000 },
        ];
        for (const key of ["source", "abandoned", "streamed", ...[0, 1, 2, 3].map((i) => `copy-target-${i}`)]) {
          await s.experiments.createExperiment({ key, variants: ab, status: ExperimentStatus.RUNNING });
        }
        const sourceRows = Array.from({ length: 50_000 }, (_, i) => ({
          experimentKey: "source",
          unitId: `src-${i}`,
          variantKey: i % 2 ? "a" : "b",
        }));
        await s.experiments.importAssignments(
          (async function* () {
            yield { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows: sourceRows };
          })(),
        );

        // Imports whose client sends one message and goes quiet: more of them than transfer connections.
        const imports = Array.from({ length: 4 }, (_, i) => {
          let release = () => {};
          const gate = new Promise<void>((r) => (release = r));
          const c = rawClients(s.server.address, 60_000);
          closers.push(() => {
            release();
            c.close();
          });
          return c.experiments
            .importAssignments(
              (async function* () {
                yield {
                  setup: { policy: ImportPolicy.SKIP_EXISTING },
                  rows: Array.from({ length: 1_000 }, (_, k) => ({ experimentKey: "abandoned", unitId: `ab-${i}-${k}`, variantKey: "a" })),
                };
                await gate;
              })(),
            )
            .then(
              (r) => `stored ${r.imported}`,
              (err: unknown) => `${codeName(codeOf(err))}: ${(err as { details?: string }).details}`,
            );
        });
        // Answer streams that read one answer and stop reading, while their writers keep offering batches.
        const streams = await Promise.all(
          Array.from({ length: 8 }, async (_, i) => {
            const c = rawClients(s.server.address, 60_000);
            const call = c.assignments.streamAssign(
              (async function* () {
                yield { setup: { experimentKeys: ["streamed"] } };
                for (let b = 0; b < 1_000; b++) yield { unitIds: Array.from({ length: 2_000 }, (_, k) => `st-${i}-${b}-${k}`) };
              })(),
            ) as AsyncIterable<unknown> & Cancellable;
            call.on("error", () => {});
            closers.push(() => {
              call.cancel();
              c.close();
            });
            return (await call[Symbol.asyncIterator]().next()).done;
          }),
        );
        expect(streams).toEqual(streams.map(() => false));
        // Copies whose progress is never read after the first message.
        for (let i = 0; i < 4; i++) {
          const c = rawClients(s.server.address, 60_000);
          const call = c.experiments.copyAssignments({
            sourceExperimentKey: "source",
            targetExperimentKey: `copy-target-${i}`,
            variantMapping: { a: "a", b: "b" },
            batchSize: 1_000,
          }) as AsyncIterable<unknown> & Cancellable;
          call.on("error", () => {});
          void call[Symbol.asyncIterator]()
            .next()
            .catch(() => {});
          closers.push(() => {
            call.cancel();
            c.close();
          });
        }

        const wrong = new Mismatches();
        const loads = await pageLoads(s.server.address, "beside", 8_000, wrong);
        expect(Object.fromEntries(loads.failures)).toEqual({});
        expect(loads.answered.length).toBeGreaterThan(0);
        expect(wrong.first).toEqual([]);
        await expectStored(s.databaseUrl, loads.answered);

        // The quiet imports were abandoned, and stored nothing.
        const outcomes = await Promise.all(imports);
        for (const o of outcomes)
          expect(o).toMatch(/^DEADLINE_EXCEEDED: no message from the client for 3 s after 1000 rows: the import was abandoned/);
        expect((await storedAssignments(s.databaseUrl, "abandoned")).size).toBe(0);
      } finally {
        for (const close of closers) close();
      }
      try {
        // The transfer connections are free again: an import and an export run.
        const done = await s.experiments.importAssignments(
          (async function* () {
            yield { setup: {}, rows: [{ experimentKey: "abandoned", unitId: "after", variantKey: "b" }] };
          })(),
        );
        expect(done.imported).toBe(1n);
        let exported = 0;
        for await (const r of s.experiments.exportAssignments({ experimentKey: "source" })) exported += r.unitIds.length;
        expect(exported).toBe(50_000);
      } finally {
        await s.stop();
      }
    },
  );
});
