/**
 * Concurrent callers racing on the same new units (SPEC.md "Stored assignments": one row per
 * (experiment, unit); every later evaluation answers the stored variant).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers, type ColumnAnswer } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { separateClients, specVariant, sql, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

/** A deterministic shuffle (xorshift), so that every caller walks the units in its own order. */
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed * 2654435761 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const chunk = <T>(xs: readonly T[], n: number): T[][] =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

describe("8 concurrent callers on the same 5,000 new units", () => {
  it("end with exactly one stored row per unit and the same variant in every answer", async () => {
    const variants = [
      { key: "a", weight: 2500 },
      { key: "b", weight: 2500 },
      { key: "c", weight: 2500 },
      { key: "d", weight: 2500 },
    ];
    await t.experiments.createExperiment({ key: "race", variants, status: ExperimentStatus.RUNNING });
    const ids = units("race-unit-", 5000);
    const callers = Array.from({ length: 8 }, () => separateClients(t.server.address));

    // Every caller answers every unit; callers use different batchings and orders so that their
    // inserts overlap in every possible way: BulkAssign in chunks of 1000 or 700 (own order),
    // MatrixAssign, and single Assign calls in parallel.
    const answersOf = async (k: number): Promise<Map<string, ColumnAnswer[]>> => {
      const c = callers[k].assignments;
      const got = new Map<string, ColumnAnswer[]>();
      const put = (u: string, a: ColumnAnswer) => (got.get(u) ?? got.set(u, []).get(u)!).push(a);
      const order = shuffled(ids, k + 1);
      if (k === 7) {
        // Single Assign calls, 200 in flight at a time.
        for (const part of chunk(order, 200)) {
          const rs = await Promise.all(part.map((u) => c.assign({ experimentKey: "race", unitId: u })));
          rs.forEach((r, i) =>
            put(part[i], {
              variantKey: r.assignment!.variantKey,
              reason: r.assignment!.reason,
              enrolled: r.assignment!.enrolled,
              stored: r.assignment!.stored,
            }),
          );
        }
      } else if (k === 6) {
        for (const part of chunk(order, 2500)) {
          const col = (await c.matrixAssign({ experimentKeys: ["race"], unitIds: part })).columns[0];
          columnAnswers(col).forEach((a, i) => put(part[i], a));
        }
      } else {
        const size = k % 2 === 0 ? 1000 : 700;
        // Chunks are sent in parallel too.
        await Promise.all(
          chunk(order, size).map(async (part) => {
            const col = (await c.bulkAssign({ experimentKey: "race", unitIds: part })).column!;
            columnAnswers(col).forEach((a, i) => put(part[i], a));
          }),
        );
      }
      return got;
    };

    try {
      const all = await Promise.all(callers.map((_, k) => answersOf(k)));

      // One row per unit, in the whole table.
      const [{ rows, distinct }] = await sql<{ rows: number; distinct: number }>(
        t.databaseUrl,
        `SELECT count(*)::int AS rows, count(DISTINCT unit_id)::int AS distinct FROM assignments`,
      );
      expect({ rows, distinct }).toEqual({ rows: 5000, distinct: 5000 });

      const stored = await storedAssignments(t.databaseUrl, "race");
      let newAnswers = 0;
      for (const u of ids) {
        const want = specVariant(u, "race", variants);
        expect(stored.get(u)!.variant).toBe(want);
        const answers = all.map((m) => m.get(u)!);
        for (const list of answers) {
          expect(list.length).toBe(1);
          const a = list[0];
          expect(a.variantKey, u).toBe(want);
          expect(a.stored).toBe(true);
          expect(a.enrolled).toBe(true);
          expect([Reason.NEW, Reason.STICKY]).toContain(a.reason);
          if (a.reason === Reason.NEW) newAnswers++;
        }
      }
      // The row was written once, so exactly one caller saw it as NEW.
      expect(newAnswers).toBe(ids.length);

      // Everyone agrees afterwards too.
      const after = columnAnswers((await callers[0].assignments.bulkAssign({ experimentKey: "race", unitIds: ids })).column!);
      ids.forEach((u, i) => expect([after[i].variantKey, after[i].reason]).toEqual([specVariant(u, "race", variants), Reason.STICKY]));
      const stats = await t.experiments.getExperimentStats({ key: "race" });
      expect(stats.totalUnits).toBe(5000n);
    } finally {
      for (const c of callers) {
        c.assignments.close();
        c.experiments.close();
      }
    }
  });
});
