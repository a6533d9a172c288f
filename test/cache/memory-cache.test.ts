import { describe, expect, it } from "vitest";
import { MemoryCache } from "../../src/cache/memory-cache.js";
import { Source } from "../../gen/ts/assignment/v1/types_pb.js";

const v = (variantId: number) => ({ variantId, source: Source.HASH });
const cell = (experimentId: number, unitId: string, generation = 0) => ({ experimentId, unitId, generation });

describe("MemoryCache", () => {
  it("answers what was set, for the same generation only", () => {
    const c = new MemoryCache(100);
    c.setMany([cell(1, "u", 3)], [v(2)]);
    expect(c.get(cell(1, "u", 3))).toEqual(v(2));
    expect(c.get(cell(1, "u", 4))).toBeUndefined(); // overrides moved the generation on
    expect(c.get(cell(1, "other", 3))).toBeUndefined();
    expect(c.get(cell(2, "u", 3))).toBeUndefined(); // another experiment
  });

  it("keeps values whose encoding needs more than 32 bits: a high generation, the highest variant id, every source", () => {
    const c = new MemoryCache(100);
    // (generation * 65536 + variant) * 8 + source: generation 2^20 puts it near 2^42.
    const generation = 2 ** 20;
    const sources = [Source.HASH, Source.IMPORT, Source.OVERRIDE];
    c.setMany(
      sources.map((_, i) => cell(7, `g${i}`, generation)),
      sources.map((source) => ({ variantId: 65_535, source })),
    );
    sources.forEach((source, i) => expect(c.get(cell(7, `g${i}`, generation))).toEqual({ variantId: 65_535, source }));
    expect(c.get(cell(7, "g0", generation - 1))).toBeUndefined();
    expect(c.get(cell(7, "g0", generation + 1))).toBeUndefined();
  });

  it("never holds more than its bound, however many entries pass through", () => {
    const c = new MemoryCache(1_000);
    for (let i = 0; i < 50_000; i++) c.setMany([cell(1, `k${i}`)], [v(i % 3)]);
    expect(c.entries).toBeLessThanOrEqual(1_000);
    // the most recent entries are still there, with their own values
    for (let i = 49_700; i < 50_000; i++) expect(c.get(cell(1, `k${i}`))).toEqual(v(i % 3));
  });

  it("keeps an entry that keeps being used while newer ones pass through", () => {
    const c = new MemoryCache(1_000);
    c.setMany([cell(1, "hot")], [v(1)]);
    for (let i = 0; i < 10_000; i++) {
      c.setMany([cell(1, `k${i}`)], [v(0)]);
      if (i % 100 === 0) expect(c.get(cell(1, "hot"))).toEqual(v(1));
    }
    expect(c.get(cell(1, "hot"))).toEqual(v(1));
    expect(c.get(cell(1, "k0"))).toBeUndefined(); // an entry nobody read again was dropped
  });

  it("tells apart 200,000 distinct units that all sit in the cache at once", () => {
    const c = new MemoryCache(500_000);
    const ids = Array.from({ length: 200_000 }, (_, i) => `user-${i}`);
    c.setMany(
      ids.map((u) => cell(7, u)),
      ids.map((_, i) => ({ variantId: i % 97, source: Source.HASH })),
    );
    ids.forEach((u, i) => {
      if (c.get(cell(7, u))?.variantId !== i % 97) throw new Error(`${u} answered ${c.get(cell(7, u))?.variantId}`);
    });
    expect(c.get(cell(7, "user-200000"))).toBeUndefined();
  });

  it("holds nothing when sized 0", () => {
    const c = new MemoryCache(0);
    c.setMany([cell(1, "a")], [v(0)]);
    expect(c.get(cell(1, "a"))).toBeUndefined();
    expect(c.entries).toBe(0);
  });
});
