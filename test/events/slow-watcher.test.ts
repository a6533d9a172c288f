/**
 * A slow watcher of WatchAssignments is held, not buffered, and holds no database connection that
 * page loads need (SPEC.md "Assignment events": backpressure as in StreamAssign).
 *
 * A server with a pool of 2 PostgreSQL connections. Four watchers (each on its own HTTP/2
 * connection) start from the beginning, read one message each and then read nothing, while 40,000
 * events are written (BulkAssign) and page loads store new units (AssignUnit, 3 clients). Then:
 * - every page load was answered, NEW and stored (four watchers holding a connection each would
 *   have left none of the two: every page load would have waited 5 s and failed UNAVAILABLE);
 * - what each watcher's client received stopped growing far below what was written: the server
 *   sent only what the transport took (and holds one page, not the backlog);
 * - with the watchers still stalled and the writes over, the pool is seen with no connection
 *   checked out (the watchers hold none between pages);
 * - read again, each watcher gets every event, positions 1..N, once each (being held lost nothing).
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  createClient,
  ExperimentService,
  ExperimentStatus,
  Reason,
  type WatchAssignmentsResponse,
} from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";

let t: TestServer;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const W = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const WATCHERS = 4;
const PAGE = 100;
const EVENTS = 40_000;

beforeAll(async () => {
  t = await startTestServer({ databasePoolSize: 2, events: { sequenceMs: 20 } });
  await t.experiments.createExperiment({ key: "bulk", variants: W, status: ExperimentStatus.RUNNING });
  await t.experiments.createExperiment({ key: "page", variants: W, tags: ["page"], status: ExperimentStatus.RUNNING });
});
afterAll(async () => {
  await t?.stop();
});

describe("a slow watcher", () => {
  it("is held with a bounded backlog and no connection while page loads are answered with a pool of 2", async () => {
    const pool = (t.server.database as unknown as { pool: pg.Pool }).pool;
    expect(pool.options.max).toBe(2);
    const bulk = async (from: number, to: number) => {
      for (let i = from; i < to; i += 1_000)
        await t.assignments.bulkAssign({ experimentKey: "bulk", unitIds: Array.from({ length: 1_000 }, (_, k) => `b${i + k}`) });
    };
    await bulk(0, EVENTS / 4);
    // Numbered before the watchers start (they end once caught up: they must not be, while stalled).
    const outbox = async () =>
      Number((await t.server.database.query<{ n: string }>(`SELECT count(*) AS n FROM assignment_outbox`)).rows[0]!.n);
    for (let i = 0; i < 600 && (await outbox()) > 0; i++) await sleep(100);

    // Four watchers read one message each, then stop reading.
    const watchers = await Promise.all(
      Array.from({ length: WATCHERS }, async () => {
        const client = createClient(ExperimentService, t.server.address, {
          retry: false,
          timeoutMs: 0,
          channelOptions: { "grpc.use_local_subchannel_pool": 1 },
        });
        const call = client.watchAssignments({ start: { case: "afterPosition", value: 0n }, maxBatch: PAGE, stopWhenCaughtUp: true });
        const it = call[Symbol.asyncIterator]();
        const first = await it.next();
        expect(first.done).toBe(false);
        return {
          client,
          it,
          first: first.value as WatchAssignmentsResponse,
          buffered: () => (call as unknown as { readableLength: number }).readableLength,
        };
      }),
    );

    // Meanwhile: the rest of the events, and page loads storing new units.
    let writing = true;
    const pageFailures: string[] = [];
    let pageLoads = 0;
    const pages = Array.from({ length: 3 }, async (_, w) => {
      const a = createClient(AssignmentService, t.server.address, { retry: false, timeoutMs: 30_000 });
      try {
        for (let i = 0; writing || i < 20; i++) {
          try {
            const { assignments } = await a.assignUnit({ units: { user_id: `p${w}-${i}` }, tag: "page" });
            const x = assignments[0];
            if (assignments.length !== 1 || x?.reason !== Reason.NEW || !x.stored) pageFailures.push(`p${w}-${i}: ${JSON.stringify(x)}`);
            pageLoads++;
          } catch (err) {
            pageFailures.push(`p${w}-${i}: ${(err as Error).message}`);
          }
        }
      } finally {
        a.close();
      }
    });
    await bulk(EVENTS / 4, EVENTS);
    writing = false;
    await Promise.all(pages);
    expect(pageFailures.slice(0, 5)).toEqual([]);
    expect(pageLoads).toBeGreaterThanOrEqual(60);

    // Every write numbered (the sequencer caught up).
    for (let i = 0; i < 600 && (await outbox()) > 0; i++) await sleep(100);
    const total = Number(
      (await t.server.database.query<{ p: string }>(`SELECT last_position::text AS p FROM assignment_event_sequence`)).rows[0]!.p,
    );
    expect(total).toBe(EVENTS + pageLoads);

    // What the watchers' clients hold stopped growing (the server stopped sending) far below the backlog.
    let last = -1;
    let since = Date.now();
    for (const started = Date.now(); Date.now() - started < 60_000; ) {
      await sleep(100);
      const now = watchers.reduce((n, w) => n + w.buffered(), 0);
      if (now !== last) [last, since] = [now, Date.now()];
      else if (Date.now() - since >= 1_000) break;
    }
    const received = watchers.map((w) => 1 + w.buffered());
    console.log(`stalled watchers received ${received.join(", ")} pages of ${PAGE} of the ${Math.ceil(total / PAGE)} written`);
    for (const r of received) expect(r).toBeLessThan(total / PAGE / 4);

    // With the watchers still stalled and nothing written, no connection is checked out.
    let minCheckedOut = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 100; i++) {
      minCheckedOut = Math.min(minCheckedOut, pool.totalCount - pool.idleCount);
      await sleep(10);
    }
    expect(minCheckedOut).toBe(0);
    expect(pool.waitingCount).toBe(0);

    // Read on: each watcher gets every event once, in order.
    for (const w of watchers) {
      const positions = w.first.events.map((e) => Number(e.position));
      for (let r = await w.it.next(); !r.done; r = await w.it.next()) positions.push(...r.value.events.map((e) => Number(e.position)));
      w.client.close();
      expect(positions.length).toBe(total);
      expect(positions.every((p, i) => p === i + 1)).toBe(true);
    }
  }, 240_000);
});
