/**
 * SPEC.md "Sample ratio": Pearson chi-square of stored (hashed) counts against the weights, its
 * p-value, and p < 0.001 flagged as a mismatch. Expected values come from printed chi-square
 * critical-value tables and closed forms, not from the code.
 */
import { describe, expect, it } from "vitest";
import { chiSquareSurvival, sampleRatio, SRM_THRESHOLD } from "../../src/engine/index.js";

function expectRelClose(actual: number, expected: number, rel: number, label: string) {
  expect(Math.abs(actual - expected) / Math.abs(expected), `${label}: got ${actual}, want ${expected}`).toBeLessThan(rel);
}

describe("chiSquareSurvival: P(X ≥ x) for X ~ chi-square(k)", () => {
  // Upper-tail critical values as printed in standard tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.4).
  const table: [x: number, k: number, p: number][] = [
    [3.841, 1, 0.05],
    [5.991, 2, 0.05],
    [6.635, 1, 0.01],
    [10.828, 1, 0.001],
    [16.266, 3, 0.001],
    [2.706, 1, 0.1],
    [0.0158, 1, 0.9],
    [0.103, 2, 0.95],
    [0.352, 3, 0.95],
    [7.779, 4, 0.1],
    [11.07, 5, 0.05],
    [20.515, 5, 0.001],
    [18.307, 10, 0.05],
    [29.588, 10, 0.001],
    [43.773, 30, 0.05],
    [59.703, 30, 0.001],
    [124.342, 100, 0.05],
    [149.449, 100, 0.001],
  ];
  it.each(table)("x = %f, k = %i → %f (1e-3 relative)", (x, k, p) => {
    expectRelClose(chiSquareSurvival(x, k), p, 1e-3, `x=${x} k=${k}`);
  });

  it("is 1 at x = 0 for every k", () => {
    for (const k of [1, 2, 3, 10, 99]) expect(chiSquareSurvival(0, k)).toBe(1);
  });

  it("matches the closed forms for even k: k=2 → e^(-x/2); k=4 → e^(-x/2)(1 + x/2); k=6 adds (x/2)²/2", () => {
    for (const x of [0.01, 0.5, 1, 1.9, 2, 2.1, 3, 5, 8, 16, 40, 100]) {
      const h = x / 2;
      expectRelClose(chiSquareSurvival(x, 2), Math.exp(-h), 1e-9, `k=2 x=${x}`);
      expectRelClose(chiSquareSurvival(x, 4), Math.exp(-h) * (1 + h), 1e-9, `k=4 x=${x}`);
      expectRelClose(chiSquareSurvival(x, 6), Math.exp(-h) * (1 + h + (h * h) / 2), 1e-9, `k=6 x=${x}`);
    }
  });

  it("is decreasing in x and stays within [0, 1]", () => {
    for (const k of [1, 2, 5, 99]) {
      let prev = 1;
      for (let x = 0; x <= 300; x += 0.25) {
        const p = chiSquareSurvival(x, k);
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThanOrEqual(prev + 1e-12);
        prev = p;
      }
    }
  });
});

describe("sampleRatio", () => {
  it("SPEC threshold is 0.001", () => {
    expect(SRM_THRESHOLD).toBe(0.001);
  });

  it("exact counts: chi-square 0, p = 1, no mismatch", () => {
    const r = sampleRatio([5000, 5000], [5000, 5000]);
    expect(r.chiSquare).toBe(0);
    expect(r.degreesOfFreedom).toBe(1);
    expect(r.pValue).toBeCloseTo(1, 12);
    expect(r.mismatch).toBe(false);
    const r3 = sampleRatio([2000, 3000, 5000], [2000, 3000, 5000]);
    expect(r3.chiSquare).toBe(0);
    expect(r3.degreesOfFreedom).toBe(2);
    expect(r3.mismatch).toBe(false);
  });

  it("nearly balanced: 5050 vs 4950 → chi-square 1 (p ≈ 0.3173), no mismatch", () => {
    // (50²/5000) * 2 = 1; P(chi2_1 ≥ 1) = erfc(1/√2) = 0.31731...
    const r = sampleRatio([5050, 4950], [5000, 5000]);
    expect(r.chiSquare).toBeCloseTo(1, 10);
    expectRelClose(r.pValue, 0.3173105078629141, 1e-6, "p");
    expect(r.mismatch).toBe(false);
  });

  it("skewed 50/50: 5200 vs 4800 → chi-square 16, p ≈ 6.334e-5, mismatch", () => {
    // (200²/5000) * 2 = 16; P(chi2_1 ≥ 16) = erfc(√8) = 6.3342483666e-5.
    const r = sampleRatio([5200, 4800], [5000, 5000]);
    expect(r.chiSquare).toBeCloseTo(16, 10);
    expect(r.degreesOfFreedom).toBe(1);
    expectRelClose(r.pValue, 6.334248366623977e-5, 1e-4, "p");
    expect(r.mismatch).toBe(true);
  });

  it("three variants 25/25/50: 2600/2400/5000 → chi-square 8, p = e^-4, no mismatch; 2700/2300/5000 → 32, p = e^-16, mismatch", () => {
    const ok = sampleRatio([2600, 2400, 5000], [2500, 2500, 5000]);
    expect(ok.chiSquare).toBeCloseTo(8, 10);
    expect(ok.degreesOfFreedom).toBe(2);
    expectRelClose(ok.pValue, Math.exp(-4), 1e-9, "p");
    expect(ok.mismatch).toBe(false);
    const bad = sampleRatio([2700, 2300, 5000], [2500, 2500, 5000]);
    expect(bad.chiSquare).toBeCloseTo(32, 10);
    expectRelClose(bad.pValue, Math.exp(-16), 1e-9, "p");
    expect(bad.mismatch).toBe(true);
  });

  it("expected counts scale with the total, not with 10000", () => {
    // 90/10 weights, 1000 units: expected 900/100; observed 870/130 → 30²/900 + 30²/100 = 1 + 9 = 10.
    const r = sampleRatio([870, 130], [9000, 1000]);
    expect(r.chiSquare).toBeCloseTo(10, 10);
    expectRelClose(r.pValue, 0.001565402258002549, 1e-4, "p"); // erfc(√5)
    expect(r.mismatch).toBe(false);
  });

  it("zero-weight variants are excluded from the degrees of freedom", () => {
    const r = sampleRatio([5000, 0, 5000], [5000, 0, 5000]);
    expect(r.degreesOfFreedom).toBe(1);
    expect(r.chiSquare).toBe(0);
    expect(r.mismatch).toBe(false);
    // Same skew as 5200/4800 with a zero-weight variant in the middle: same chi-square and dof 1.
    const skew = sampleRatio([5200, 0, 4800], [5000, 0, 5000]);
    expect(skew.degreesOfFreedom).toBe(1);
    expect(skew.chiSquare).toBeCloseTo(16, 10);
    expectRelClose(skew.pValue, 6.334248366623977e-5, 1e-4, "p");
    expect(skew.mismatch).toBe(true);
    // 4 variants, 2 of them zero weight: 5100/4900 → chi-square 4 with dof 1 (not 3): p = erfc(√2) ≈ 0.0455.
    const four = sampleRatio([0, 5100, 0, 4900], [0, 5000, 0, 5000]);
    expect(four.degreesOfFreedom).toBe(1);
    expect(four.chiSquare).toBeCloseTo(4, 10);
    expectRelClose(four.pValue, 0.04550026389635842, 1e-4, "p"); // erfc(√2)
  });

  it("no units, or a single variant, is never a mismatch", () => {
    const empty = sampleRatio([0, 0], [5000, 5000]);
    expect(empty.pValue).toBe(1);
    expect(empty.mismatch).toBe(false);
    const single = sampleRatio([1234], [10000]);
    expect(single.degreesOfFreedom).toBe(0);
    expect(single.pValue).toBe(1);
    expect(single.mismatch).toBe(false);
  });
});
