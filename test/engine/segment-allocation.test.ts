/**
 * SPEC.md "Namespaces": an allocation takes N free segments, spread pseudo-randomly, reproducibly,
 * never moving a taken one. The expected pick is derived independently: free segments ranked by
 * the reference MurmurHash3 of "salt:experiment:segment", then by segment.
 */
import { describe, expect, it } from "vitest";
import { Code, ServiceError } from "../../src/errors.js";
import { pickSegments, type SegmentSpace } from "../../src/engine/index.js";
import { referenceH } from "./helpers.js";

const space = (segments: number): SegmentSpace => ({ key: "ns", salt: "ns-salt", segments, hashVersion: 1 });

function expected(s: SegmentSpace, taken: readonly number[], experimentKey: string, count: number): number[] {
  const free = Array.from({ length: s.segments }, (_, i) => i).filter((i) => !taken.includes(i));
  const ranked = free.map((seg) => ({ seg, h: referenceH(`${s.salt}:${experimentKey}:${seg}`) }));
  ranked.sort((a, b) => a.h - b.h || a.seg - b.seg);
  return ranked.slice(0, count).map((r) => r.seg);
}

describe("pickSegments", () => {
  it.each<[string, number, number[], string, number]>([
    ["a few of an empty space", 100, [], "exp-a", 10],
    ["all of an empty space", 20, [], "exp-a", 20],
    ["none", 20, [], "exp-a", 0],
    ["around taken segments", 50, [0, 1, 2, 3, 10, 20, 30, 40, 49], "exp-b", 25],
    ["every free one", 10, [1, 3, 5, 7, 9], "exp-c", 5],
    ["of a large space", 10_000, [], "exp-d", 2_500],
  ])("%s", (_name, segments, taken, key, count) => {
    const picked = pickSegments(space(segments), taken, key, count);
    expect(picked).toEqual(expected(space(segments), taken, key, count));
    expect(new Set(picked).size).toBe(count);
    for (const s of picked) expect(taken.includes(s) || s < 0 || s >= segments).toBe(false);
  });

  it("depends on the experiment and the namespace salt, so experiments do not share a pattern", () => {
    const a = pickSegments(space(1_000), [], "exp-a", 100);
    const b = pickSegments(space(1_000), [], "exp-b", 100);
    const c = pickSegments({ ...space(1_000), salt: "other" }, [], "exp-a", 100);
    expect(a).not.toEqual(b);
    expect(a).not.toEqual(c);
  });

  it("spreads over the whole space", () => {
    const picked = pickSegments(space(10_000), [], "spread", 1_000);
    const tenths = new Array(10).fill(0);
    for (const s of picked) tenths[Math.floor(s / 1_000)]++;
    for (const n of tenths) expect(n).toBeGreaterThan(50); // 100 expected in each tenth
  });

  it("asking for more than are free is RESOURCE_EXHAUSTED and names the namespace", () => {
    let caught: unknown;
    try {
      pickSegments(space(10), [0, 1, 2], "exp", 8);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ServiceError);
    expect([(caught as ServiceError).code, (caught as ServiceError).message]).toEqual([
      Code.ResourceExhausted,
      'segments: asked for 8 segments, namespace "ns" has 7 free',
    ]);
  });
});
