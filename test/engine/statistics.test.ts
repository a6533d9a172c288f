/**
 * Statistical properties SPEC.md promises, over 100,000 units `user-${i}`:
 * shares follow the weights, distinct salts are independent, namespaces are exclusive, and raising
 * the rollout only adds units.
 */
import { describe, expect, it } from "vitest";
import { Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import { chiSquareSurvival, decide, type NamespaceConfig } from "../../src/engine/index.js";
import { makeExperiment, mulberry32, variantId } from "./helpers.js";

const N = 100_000;
const units = Array.from({ length: N }, (_, i) => `user-${i}`);
const TOLERANCE = 0.01;

/** Index of the variant a NEW answer picked (variant ids are 100 + 7 * index). */
function indexOf(id: number | undefined): number {
  if (id === undefined) throw new Error("no variant");
  const i = (id - 100) / 7;
  if (!Number.isInteger(i) || variantId(i) !== id) throw new Error(`unexpected variant id ${id}`);
  return i;
}

/** Pearson chi-square test of independence on an r × c contingency table; returns [statistic, dof, p]. */
function independence(table: number[][]): [number, number, number] {
  const rows = table.map((r) => r.reduce((a, b) => a + b, 0));
  const cols = table[0].map((_, j) => table.reduce((a, r) => a + r[j], 0));
  const total = rows.reduce((a, b) => a + b, 0);
  let stat = 0;
  for (let i = 0; i < table.length; i++) {
    for (let j = 0; j < cols.length; j++) {
      const expected = (rows[i] * cols[j]) / total;
      stat += (table[i][j] - expected) ** 2 / expected;
    }
  }
  const dof = (table.length - 1) * (cols.length - 1);
  return [stat, dof, chiSquareSurvival(stat, dof)];
}

function assignAll(salt: string, weights: number[]): number[] {
  const exp = makeExperiment({ key: salt, salt, weights });
  return units.map((u) => {
    const got = decide(exp, u, undefined);
    if (got.reason !== Reason.NEW) throw new Error(`${u}: ${Reason[got.reason]}`);
    return indexOf(got.variant?.id);
  });
}

describe("variant shares follow the weights (100,000 units)", () => {
  const weightSets = [
    [5000, 5000],
    [3333, 3333, 3334],
    [1000, 2000, 7000],
    [9900, 100],
  ];
  it.each(weightSets.map((w) => [w.join("/"), w] as const))("weights %s: each share within 1%% of its weight", (_, weights) => {
    const counts = new Array<number>(weights.length).fill(0);
    for (const i of assignAll(`share-${weights.join("-")}`, weights)) counts[i]++;
    expect(counts.reduce((a, b) => a + b, 0)).toBe(N);
    weights.forEach((w, i) => {
      const share = counts[i] / N;
      expect(Math.abs(share - w / 10000), `variant ${i}: share ${share} vs ${w / 10000}`).toBeLessThan(TOLERANCE);
    });
  });

  it("a zero-weight variant gets nobody", () => {
    const counts = [0, 0, 0];
    for (const i of assignAll("zero-weight", [5000, 0, 5000])) counts[i]++;
    expect(counts[1]).toBe(0);
  });
});

describe("experiments with different salts are independent", () => {
  it("2 × 3 contingency table of two experiments' variants: chi-square independence p > 0.001", () => {
    const a = assignAll("checkout-flow-v2", [5000, 5000]);
    const b = assignAll("pricing.2026-q4", [3333, 3333, 3334]);
    const table = [
      [0, 0, 0],
      [0, 0, 0],
    ];
    for (let k = 0; k < N; k++) table[a[k]][b[k]]++;
    const [stat, dof, p] = independence(table);
    expect(dof).toBe(2);
    expect(p, `chi-square ${stat}`).toBeGreaterThan(0.001);
  });

  it("3 × 3 table: p > 0.001", () => {
    const a = assignAll("exp-alpha", [3334, 3333, 3333]);
    const b = assignAll("exp-beta", [2000, 3000, 5000]);
    const table = [0, 1, 2].map(() => [0, 0, 0]);
    for (let k = 0; k < N; k++) table[a[k]][b[k]]++;
    const [stat, dof, p] = independence(table);
    expect(dof).toBe(4);
    expect(p, `chi-square ${stat}`).toBeGreaterThan(0.001);
  });

  it("the test has power: the same salt (a reused salt, which SPEC refuses) is flagged as dependent", () => {
    const a = assignAll("same-salt", [5000, 5000]);
    const b = assignAll("same-salt", [5000, 5000]);
    const table = [
      [0, 0],
      [0, 0],
    ];
    for (let k = 0; k < N; k++) table[a[k]][b[k]]++;
    const [, dof, p] = independence(table);
    expect(dof).toBe(1);
    expect(p).toBeLessThan(1e-10);
  });
});

describe("namespace exclusivity", () => {
  it("1000 segments allocated 300/450/200 (50 free): no unit NEW in two experiments; shares ≈ segments/1000", () => {
    const segments = 1000;
    const owners = new Int32Array(segments);
    // Pseudo-random disjoint allocation: shuffle the segment numbers, hand out consecutive runs.
    const order = Array.from({ length: segments }, (_, i) => i);
    const rand = mulberry32(42);
    for (let i = segments - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const allocation = [
      { id: 11, count: 300 },
      { id: 12, count: 450 },
      { id: 13, count: 200 },
    ];
    let next = 0;
    for (const a of allocation) for (let k = 0; k < a.count; k++) owners[order[next++]] = a.id;
    const ns: NamespaceConfig = {
      id: 1,
      key: "checkout-ns",
      salt: "checkout-ns-salt",
      unitType: "user_id",
      hashVersion: 1,
      segments,
      owners,
    };
    const exps = allocation.map((a) => makeExperiment({ id: a.id, key: `ns-exp-${a.id}`, weights: [5000, 5000], namespace: ns }));

    const enrolledIn = new Uint8Array(N);
    const newCounts = [0, 0, 0];
    for (let k = 0; k < N; k++) {
      exps.forEach((exp, e) => {
        const got = decide(exp, units[k], undefined);
        if (got.reason === Reason.NEW) {
          enrolledIn[k]++;
          newCounts[e]++;
        } else if (got.reason !== Reason.NOT_IN_NAMESPACE) {
          throw new Error(`${units[k]} in ${exp.key}: ${Reason[got.reason]}`);
        }
      });
    }
    let inTwo = 0;
    let inNone = 0;
    for (let k = 0; k < N; k++) {
      if (enrolledIn[k] > 1) inTwo++;
      if (enrolledIn[k] === 0) inNone++;
    }
    expect(inTwo).toBe(0);
    allocation.forEach((a, e) => {
      const share = newCounts[e] / N;
      expect(Math.abs(share - a.count / segments), `${a.id}: share ${share}`).toBeLessThan(TOLERANCE);
    });
    expect(Math.abs(inNone / N - 50 / segments)).toBeLessThan(TOLERANCE);
    expect(newCounts.reduce((x, y) => x + y, 0) + inNone).toBe(N);
  });
});

describe("raising the rollout only adds units", () => {
  it("10% → 50%: nobody leaves, nobody changes variant; enrolled shares ≈ 10% and 50%", () => {
    const weights = [3334, 3333, 3333];
    const at10 = makeExperiment({ salt: "rollout-exp", weights, rollout: 1000 });
    const at50 = makeExperiment({ salt: "rollout-exp", weights, rollout: 5000 });
    const full = makeExperiment({ salt: "rollout-exp", weights, rollout: 10000 });
    let n10 = 0;
    let n50 = 0;
    let left = 0;
    let changed = 0;
    let differsFromFull = 0;
    let otherReasons = 0;
    for (const u of units) {
      const a = decide(at10, u, undefined);
      const b = decide(at50, u, undefined);
      if (b.reason === Reason.NEW) n50++;
      else if (b.reason !== Reason.NOT_IN_ROLLOUT) otherReasons++;
      if (a.reason === Reason.NEW) {
        n10++;
        if (b.reason !== Reason.NEW) left++;
        else if (b.variant?.id !== a.variant?.id) changed++;
        // And the variant is the one full rollout would give (rollout does not bias the split).
        if (a.variant?.id !== decide(full, u, undefined).variant?.id) differsFromFull++;
      } else if (a.reason !== Reason.NOT_IN_ROLLOUT) {
        otherReasons++;
      }
    }
    expect(left).toBe(0);
    expect(changed).toBe(0);
    expect(differsFromFull).toBe(0);
    expect(otherReasons).toBe(0);
    expect(Math.abs(n10 / N - 0.1), `10%: ${n10}`).toBeLessThan(TOLERANCE);
    expect(Math.abs(n50 / N - 0.5), `50%: ${n50}`).toBeLessThan(TOLERANCE);
  });

  it("enrolled units at 10% are still split by the weights (rollout and variant buckets independent)", () => {
    const weights = [5000, 5000];
    const exp = makeExperiment({ salt: "rollout-split", weights, rollout: 1000 });
    const counts = [0, 0];
    let enrolled = 0;
    for (const u of units) {
      const got = decide(exp, u, undefined);
      if (got.reason === Reason.NEW) {
        enrolled++;
        counts[indexOf(got.variant?.id)]++;
      }
    }
    // ~10,000 enrolled: 1% of N in absolute terms is 10% of them, so use the share among enrolled (σ ≈ 0.005).
    expect(Math.abs(counts[0] / enrolled - 0.5)).toBeLessThan(0.025);
  });
});
