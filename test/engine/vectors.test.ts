/**
 * The golden vectors of spec/vectors/assignment-v1.json (SPEC.md: "the project's tests must read
 * them and match every case"). Every case of every section is checked; a count assertion makes sure
 * none is silently skipped.
 */
import { describe, expect, it } from "vitest";
import { Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import { decide, hashV1, holdoutBucket, pickVariantIndex, rolloutBucket, segmentOf, variantBucket } from "../../src/engine/index.js";
import { classicWalk, loadVectors, makeExperiment, mulberry32, referenceH, referenceMurmur3, variantId } from "./helpers.js";

const vectors = loadVectors();

describe("golden vectors file", () => {
  it("is hash version 1 and every section is non-empty", () => {
    expect(vectors.spec_version).toBe(1);
    for (const section of ["hash", "buckets", "segments", "evaluate"] as const) {
      expect(Array.isArray(vectors[section]), section).toBe(true);
      expect(vectors[section].length, section).toBeGreaterThan(0);
    }
  });
});

describe("hash vectors: hashV1 = MurmurHash3 x86 32, seed 0, unsigned", () => {
  it("matches every case", () => {
    const cases = vectors.hash;
    const failures: string[] = [];
    let checked = 0;
    for (const c of cases) {
      const got = hashV1(c.input);
      if (got !== c.hash) failures.push(`${JSON.stringify(c.input)}: got ${got}, want ${c.hash}`);
      checked++;
    }
    expect(failures).toEqual([]);
    expect(checked).toBe(cases.length);
    expect(checked).toBeGreaterThan(0);
  });

  it("the test's own reference MurmurHash3 also matches every case (so it can be trusted below)", () => {
    let checked = 0;
    for (const c of vectors.hash) {
      expect(referenceH(c.input), JSON.stringify(c.input)).toBe(c.hash);
      checked++;
    }
    expect(checked).toBe(vectors.hash.length);
    // Published test value: MurmurHash3_x86_32("", seed 1) = 0x514E28B7.
    expect(referenceMurmur3(new Uint8Array(0), 1)).toBe(0x514e28b7);
  });

  it("agrees with the reference on multibyte strings longer than 2048 UTF-8 bytes but few UTF-16 units", () => {
    // Must run before any very long string: these probe the initial encoding buffer's sizing.
    for (const s of ["中".repeat(700), "中".repeat(1000), "😀".repeat(600), "😀".repeat(1000), "é".repeat(1500)]) {
      expect(hashV1(s), `${s.length} units / ${Buffer.byteLength(s)} bytes`).toBe(referenceH(s));
    }
  });

  it("agrees with the reference on random strings of every length class, long and short interleaved", () => {
    const rand = mulberry32(20260101);
    const alphabet = ["a", "Z", "0", ":", "-", "é", "ß", "中", "文", "😀", "🚀", " ", "\u00ff", "\u0800", "\uffff"];
    const lengths = [0, 1, 2, 3, 4, 5, 7, 8, 100, 511, 512, 700, 1000, 2048, 3000, 1, 5000, 3];
    let checked = 0;
    for (let round = 0; round < 20; round++) {
      for (const len of lengths) {
        let s = "";
        for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
        expect(hashV1(s), `len ${len} round ${round}`).toBe(referenceH(s));
        checked++;
      }
    }
    expect(checked).toBe(20 * lengths.length);
  });

  it("is unsigned: results are integers in [0, 2^32)", () => {
    // "a" hashes above 2^31 would show a signed result; check a vector whose hash is >= 2^31.
    const big = vectors.hash.find((c) => c.hash >= 2 ** 31);
    expect(big).toBeDefined();
    expect(hashV1(big!.input)).toBe(big!.hash);
  });
});

describe("bucket vectors", () => {
  it("variantBucket and rolloutBucket match every case", () => {
    const cases = vectors.buckets;
    const failures: string[] = [];
    let checked = 0;
    for (const c of cases) {
      const vb = variantBucket(c.unit_id, c.salt, 1);
      const rb = rolloutBucket(c.unit_id, c.salt, 1);
      if (vb !== c.variant_bucket || rb !== c.rollout_bucket) {
        failures.push(
          `${JSON.stringify(c.unit_id)} / ${JSON.stringify(c.salt)}: got ${vb}/${rb}, want ${c.variant_bucket}/${c.rollout_bucket}`,
        );
      }
      checked++;
    }
    expect(failures).toEqual([]);
    expect(checked).toBe(cases.length);
    expect(checked).toBeGreaterThan(0);
  });

  it("holdoutBucket is the variant bucket under the holdout's salt (SPEC.md: the buckets section read so)", () => {
    const wrong = vectors.buckets.filter((c) => holdoutBucket(c.unit_id, c.salt, 1) !== c.variant_bucket);
    expect(wrong).toEqual([]);
    expect(vectors.buckets.length).toBeGreaterThan(0);
  });

  it("the vectors agree with the SPEC formulas computed by the reference hash", () => {
    for (const c of vectors.buckets) {
      expect(referenceH(`${c.unit_id}:${c.salt}`) % 10000).toBe(c.variant_bucket);
      expect(referenceH(`${c.unit_id}:${c.salt}:rollout`) % 10000).toBe(c.rollout_bucket);
    }
  });
});

describe("segment vectors", () => {
  it("segmentOf matches every case", () => {
    const cases = vectors.segments;
    const failures: string[] = [];
    let checked = 0;
    for (const c of cases) {
      const got = segmentOf(c.unit_id, c.namespace_salt, c.segments, 1);
      if (got !== c.segment) {
        failures.push(`${JSON.stringify(c.unit_id)} / ${c.namespace_salt} / ${c.segments}: got ${got}, want ${c.segment}`);
      }
      checked++;
    }
    expect(failures).toEqual([]);
    expect(checked).toBe(cases.length);
    expect(checked).toBeGreaterThan(0);
  });
});

describe("evaluate vectors", () => {
  it("decide() on a RUNNING experiment matches every case (null ⇒ NOT_IN_ROLLOUT)", () => {
    const cases = vectors.evaluate;
    const failures: string[] = [];
    let checked = 0;
    let enrolled = 0;
    let notEnrolled = 0;
    for (const c of cases) {
      const exp = makeExperiment({ key: "vector-exp", salt: c.salt, weights: c.weights, rollout: c.rollout });
      const got = decide(exp, c.unit_id, undefined);
      const label = `${JSON.stringify(c.unit_id)} / ${c.salt} / [${c.weights}] / rollout ${c.rollout}`;
      if (c.variant === null) {
        notEnrolled++;
        if (got.reason !== Reason.NOT_IN_ROLLOUT) failures.push(`${label}: reason ${Reason[got.reason]}, want NOT_IN_ROLLOUT`);
        // Not enrolled: the default variant, which (none named) is the first.
        if (got.variant?.id !== variantId(0)) failures.push(`${label}: variant ${got.variant?.key}, want default v0`);
      } else {
        enrolled++;
        if (got.reason !== Reason.NEW) failures.push(`${label}: reason ${Reason[got.reason]}, want NEW`);
        if (got.variant?.id !== variantId(c.variant) || got.variant?.key !== `v${c.variant}`) {
          failures.push(`${label}: variant ${got.variant?.key}, want v${c.variant}`);
        }
      }
      checked++;
    }
    expect(failures).toEqual([]);
    expect(checked).toBe(cases.length);
    expect(enrolled).toBeGreaterThan(0);
    expect(notEnrolled).toBeGreaterThan(0);
  });

  it("the vectors follow the SPEC formulas (reference hash, rollout bucket < rollout, classic walk)", () => {
    for (const c of vectors.evaluate) {
      const inRollout = referenceH(`${c.unit_id}:${c.salt}:rollout`) % 10000 < c.rollout;
      const walked = classicWalk(referenceH(`${c.unit_id}:${c.salt}`) % 10000, c.weights);
      expect(c.variant, JSON.stringify(c)).toBe(inRollout ? walked : null);
    }
  });
});

describe('SPEC: "with rollout 10000 the variant equals the classic walk"', () => {
  const weightSets = [
    [5000, 5000],
    [3334, 3333, 3333],
    [9000, 1000],
    [0, 10000, 0],
    [2500, 2500, 2500, 2500],
    [1, 9998, 1],
    [10000],
    [0, 0, 10000],
    [100, 0, 0, 9900],
  ];

  it("pickVariantIndex equals the cumulative walk for every bucket 0..9999", () => {
    for (const weights of weightSets) {
      for (let b = 0; b < 10000; b++) {
        if (pickVariantIndex(b, weights) !== classicWalk(b, weights)) {
          expect.fail(`weights [${weights}] bucket ${b}: ${pickVariantIndex(b, weights)} vs ${classicWalk(b, weights)}`);
        }
      }
    }
  });

  it("pickVariantIndex at the cumulative boundaries", () => {
    // [1000, 2000, 7000]: cumulative 1000, 3000, 10000.
    const w = [1000, 2000, 7000];
    expect(pickVariantIndex(0, w)).toBe(0);
    expect(pickVariantIndex(999, w)).toBe(0);
    expect(pickVariantIndex(1000, w)).toBe(1);
    expect(pickVariantIndex(2999, w)).toBe(1);
    expect(pickVariantIndex(3000, w)).toBe(2);
    expect(pickVariantIndex(9999, w)).toBe(2);
    // A zero-weight variant is never picked.
    expect(pickVariantIndex(0, [0, 10000])).toBe(1);
    expect(pickVariantIndex(4999, [5000, 0, 5000])).toBe(0);
    expect(pickVariantIndex(5000, [5000, 0, 5000])).toBe(2);
  });

  it('decide() with rollout 10000 equals mmh3(f"{user_id}:{seed}") % 10000 walked over cumulative weights', () => {
    const rand = mulberry32(7);
    let checked = 0;
    for (const weights of weightSets) {
      const exp = makeExperiment({ salt: "classic-seed", weights, rollout: 10000 });
      for (let i = 0; i < 2000; i++) {
        const unit = i % 2 === 0 ? `user-${i}` : `u${Math.floor(rand() * 1e12)}-é😀`;
        const want = classicWalk(referenceH(`${unit}:classic-seed`) % 10000, weights);
        const got = decide(exp, unit, undefined);
        if (got.reason !== Reason.NEW || got.variant?.id !== variantId(want)) {
          expect.fail(`[${weights}] ${unit}: ${Reason[got.reason]} ${got.variant?.key}, want NEW v${want}`);
        }
        checked++;
      }
    }
    expect(checked).toBe(weightSets.length * 2000);
  });
});
