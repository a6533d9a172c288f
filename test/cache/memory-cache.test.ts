import { describe, expect, it } from "vitest";
import { MemoryCache } from "../../src/cache/memory-cache.js";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";

const v = (variantId: number) => ({ variantId, source: Source.HASH });

describe("MemoryCache", () => {
  it("answers what was set, for the same generation only", () => {
    const c = new MemoryCache(100);
    c.setMany([{ key: "1\u0000u", generation: 3 }], [v(2)]);
    expect(c.get("1\u0000u", 3)).toEqual(v(2));
    expect(c.get("1\u0000u", 4)).toBeUndefined(); // overrides moved the generation on
    expect(c.get("1\u0000other", 3)).toBeUndefined();
  });

  it("never holds more than its bound, however many entries pass through", () => {
    const c = new MemoryCache(1_000);
    for (let i = 0; i < 50_000; i++) c.setMany([{ key: `k${i}`, generation: 0 }], [v(i % 3)]);
    expect(c.entries).toBeLessThanOrEqual(1_000);
    // the most recent entries are still there
    expect(c.get("k49999", 0)).toEqual(v(49_999 % 3));
  });

  it("keeps an entry that keeps being used while newer ones pass through", () => {
    const c = new MemoryCache(1_000);
    c.setMany([{ key: "hot", generation: 0 }], [v(1)]);
    for (let i = 0; i < 10_000; i++) {
      c.setMany([{ key: `k${i}`, generation: 0 }], [v(0)]);
      if (i % 100 === 0) expect(c.get("hot", 0)).toEqual(v(1));
    }
    expect(c.get("hot", 0)).toEqual(v(1));
    expect(c.get("k0", 0)).toBeUndefined(); // an entry nobody read again was dropped
  });

  it("holds nothing when sized 0", () => {
    const c = new MemoryCache(0);
    c.setMany([{ key: "a", generation: 0 }], [v(0)]);
    expect(c.get("a", 0)).toBeUndefined();
    expect(c.entries).toBe(0);
  });
});
