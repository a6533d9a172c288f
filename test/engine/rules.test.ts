/**
 * SPEC.md "Evaluating one unit for one experiment" (rule order) and "Names and limits" (validation).
 */
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { ServiceError } from "../../src/errors.js";
import {
  checkBasisPoints,
  checkKey,
  checkSalt,
  checkSegments,
  checkUnitId,
  checkUnitType,
  checkVariantKey,
  checkVariants,
  decide,
  isEnrolled,
  isValidKey,
  isValidUnitId,
  isValidUnitType,
  needsStoreLookup,
  refuseUnit,
  type ExperimentConfig,
  type NamespaceConfig,
  type StoredAssignment,
  type VariantInput,
} from "../../src/engine/index.js";
import { classicWalk, loadVectors, makeExperiment, variantId } from "./helpers.js";

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

const override = (index: number): StoredAssignment => ({ variantId: variantId(index), source: Source.OVERRIDE });
const hashed = (index: number): StoredAssignment => ({ variantId: variantId(index), source: Source.HASH });
const imported = (index: number): StoredAssignment => ({ variantId: variantId(index), source: Source.IMPORT });

/** A namespace of `segments` segments, every one owned by `owner` (0 = free). */
function namespaceOwnedBy(owner: number, segments = 100): NamespaceConfig {
  return { id: 9, key: "ns", salt: "ns-salt", unitType: "user_id", hashVersion: 1, segments, owners: new Int32Array(segments).fill(owner) };
}

/** Three variants a/b/c (ids 100/107/114), default "b" unless told otherwise. */
function exp3(o: Parameters<typeof makeExperiment>[0] = {}): ExperimentConfig {
  return makeExperiment({ weights: [3000, 3000, 4000], keys: ["a", "b", "c"], defaultVariantKey: "b", ...o });
}

// A bucket vector with a rollout bucket strictly inside (0, 9999), to probe the rollout boundary.
const vectors = loadVectors();
const boundary = vectors.buckets.find((c) => c.rollout_bucket > 0 && c.rollout_bucket < 9999)!;

describe("rules 1 and 2: refuseUnit", () => {
  const exp = makeExperiment({ unitType: "user_id" });

  it("1. unknown experiment → UNKNOWN_EXPERIMENT, even for an invalid unit or another type", () => {
    expect(refuseUnit(undefined, "u1", "user_id")).toEqual({ reason: Reason.UNKNOWN_EXPERIMENT, variant: undefined });
    expect(refuseUnit(undefined, "", "user_id")?.reason).toBe(Reason.UNKNOWN_EXPERIMENT);
    expect(refuseUnit(undefined, "u1", "device_id")?.reason).toBe(Reason.UNKNOWN_EXPERIMENT);
  });

  it("2. INVALID_UNIT: empty, 513 bytes, U+0000", () => {
    for (const bad of ["", "a".repeat(513), "ab\u0000c", "\u0000", "é".repeat(257), "€".repeat(171), "😀".repeat(128) + "a"]) {
      const got = refuseUnit(exp, bad, "user_id");
      expect(got, `${bad.length} chars / ${utf8Bytes(bad)} bytes`).toEqual({ reason: Reason.INVALID_UNIT, variant: undefined });
    }
  });

  it("2. valid ids up to 512 bytes, multibyte counted in UTF-8 bytes", () => {
    const good = [
      "a",
      "a".repeat(512),
      "😀".repeat(128), // 256 UTF-16 units, 512 bytes
      "é".repeat(171), // 342 bytes
      "é".repeat(256), // 512 bytes
      "€".repeat(170), // 510 bytes
      "中".repeat(170) + "ab", // 512 bytes
      " ",
    ];
    for (const id of good) {
      expect(utf8Bytes(id)).toBeLessThanOrEqual(512);
      expect(refuseUnit(exp, id, "user_id"), `${id.length} chars / ${utf8Bytes(id)} bytes`).toBeUndefined();
      expect(isValidUnitId(id)).toBe(true);
    }
    expect(utf8Bytes("😀".repeat(128))).toBe(512);
    expect(utf8Bytes("€".repeat(171))).toBe(513);
  });

  it("2. INVALID_UNIT is decided before UNIT_TYPE_MISMATCH", () => {
    expect(refuseUnit(exp, "", "device_id")?.reason).toBe(Reason.INVALID_UNIT);
  });

  it("2. UNIT_TYPE_MISMATCH when the unit type is not the experiment's", () => {
    expect(refuseUnit(exp, "u1", "device_id")).toEqual({ reason: Reason.UNIT_TYPE_MISMATCH, variant: undefined });
    const dev = makeExperiment({ unitType: "device_id" });
    expect(refuseUnit(dev, "u1", "user_id")?.reason).toBe(Reason.UNIT_TYPE_MISMATCH);
    expect(refuseUnit(dev, "u1", "device_id")).toBeUndefined();
  });
});

describe("rules 3 to 9: decide", () => {
  it("3. OVERRIDE wins in every status, over winner, namespace and rollout", () => {
    const cases: ExperimentConfig[] = [
      exp3({ status: ExperimentStatus.DRAFT }),
      exp3({ status: ExperimentStatus.STOPPED, winnerKey: "a" }),
      exp3({ status: ExperimentStatus.STOPPED }),
      exp3({ status: ExperimentStatus.RUNNING }),
      exp3({ status: ExperimentStatus.PAUSED }),
      exp3({ status: ExperimentStatus.RUNNING, rollout: 0 }),
      exp3({ status: ExperimentStatus.RUNNING, namespace: namespaceOwnedBy(0) }),
    ];
    for (const exp of cases) {
      const got = decide(exp, "tester-1", override(2));
      expect(got.reason, ExperimentStatus[exp.status]).toBe(Reason.OVERRIDE);
      expect(got.variant?.key).toBe("c");
      expect(isEnrolled(got.reason)).toBe(true);
    }
  });

  it("3. an override may name a zero-weight variant", () => {
    const exp = makeExperiment({ weights: [10000, 0], keys: ["on", "off"] });
    expect(decide(exp, "u", override(1))).toMatchObject({ reason: Reason.OVERRIDE, variant: { key: "off" } });
  });

  it("4. DRAFT → default variant NOT_RUNNING, even with a stored hashed assignment", () => {
    const exp = exp3({ status: ExperimentStatus.DRAFT });
    for (const stored of [undefined, hashed(2), imported(0)]) {
      const got = decide(exp, "u1", stored);
      expect(got.reason).toBe(Reason.NOT_RUNNING);
      expect(got.variant?.key).toBe("b");
      expect(isEnrolled(got.reason)).toBe(false);
    }
  });

  it("4. STOPPED with a winner → WINNER, even with a stored assignment to another variant", () => {
    const exp = exp3({ status: ExperimentStatus.STOPPED, winnerKey: "c" });
    for (const stored of [undefined, hashed(0), imported(1)]) {
      const got = decide(exp, "u1", stored);
      expect(got.reason).toBe(Reason.WINNER);
      expect(got.variant?.key).toBe("c");
      expect(got.variant?.id).toBe(variantId(2));
    }
  });

  it("4. STOPPED without a winner → default NOT_RUNNING", () => {
    const exp = exp3({ status: ExperimentStatus.STOPPED });
    for (const stored of [undefined, hashed(2)]) {
      expect(decide(exp, "u1", stored)).toMatchObject({ reason: Reason.NOT_RUNNING, variant: { key: "b" } });
    }
  });

  it("5. RUNNING with a stored assignment → STICKY with the stored variant, over namespace and rollout", () => {
    const cases: ExperimentConfig[] = [
      exp3(),
      exp3({ rollout: 0 }),
      exp3({ namespace: namespaceOwnedBy(0) }),
      // Weights changed since: the stored variant now has weight 0 (SPEC: changing weights never moves a stored unit).
      exp3({ weights: [0, 10000, 0] }),
    ];
    for (const exp of cases) {
      for (const stored of [hashed(2), imported(2)]) {
        const got = decide(exp, "u1", stored);
        expect(got.reason).toBe(Reason.STICKY);
        expect(got.variant?.key).toBe("c");
        expect(isEnrolled(got.reason)).toBe(true);
      }
    }
  });

  it("5/6. PAUSED: stored → STICKY; not stored → default PAUSED (no new enrolment)", () => {
    const exp = exp3({ status: ExperimentStatus.PAUSED });
    expect(decide(exp, "u1", hashed(0))).toMatchObject({ reason: Reason.STICKY, variant: { key: "a" } });
    for (let i = 0; i < 200; i++) {
      // Full rollout and no namespace: only the pause keeps these units out.
      expect(decide(exp, `user-${i}`, undefined)).toMatchObject({ reason: Reason.PAUSED, variant: { key: "b" } });
    }
    // Paused is decided before the namespace and the rollout.
    const pausedNs = exp3({ status: ExperimentStatus.PAUSED, namespace: namespaceOwnedBy(0), rollout: 0 });
    expect(decide(pausedNs, "u1", undefined).reason).toBe(Reason.PAUSED);
  });

  it("7. namespaced and the unit's segment is not the experiment's → default NOT_IN_NAMESPACE (before rollout)", () => {
    const notOwned = exp3({ id: 5, namespace: namespaceOwnedBy(0) });
    const otherOwner = exp3({ id: 5, namespace: namespaceOwnedBy(6) });
    const notOwnedNoRollout = exp3({ id: 5, namespace: namespaceOwnedBy(0), rollout: 0 });
    for (let i = 0; i < 200; i++) {
      for (const exp of [notOwned, otherOwner, notOwnedNoRollout]) {
        expect(decide(exp, `user-${i}`, undefined)).toMatchObject({ reason: Reason.NOT_IN_NAMESPACE, variant: { key: "b" } });
      }
    }
    // Owned by this experiment: every unit is eligible (full rollout) → NEW.
    const owned = exp3({ id: 5, namespace: namespaceOwnedBy(5) });
    for (let i = 0; i < 200; i++) expect(decide(owned, `user-${i}`, undefined).reason).toBe(Reason.NEW);
  });

  it("7. the namespace decision uses segment = H(unit:ns_salt) mod segments (from the segment vectors)", () => {
    const c = vectors.segments[0];
    const owners = new Int32Array(c.segments);
    owners[c.segment] = 5; // only the vector's segment belongs to the experiment
    const ns: NamespaceConfig = {
      id: 9,
      key: "ns",
      salt: c.namespace_salt,
      unitType: "user_id",
      hashVersion: 1,
      segments: c.segments,
      owners,
    };
    expect(decide(exp3({ id: 5, namespace: ns }), c.unit_id, undefined).reason).toBe(Reason.NEW);
    const owners2 = new Int32Array(c.segments).fill(5);
    owners2[c.segment] = 0; // every segment but the vector's
    const ns2: NamespaceConfig = { ...ns, owners: owners2 };
    expect(decide(exp3({ id: 5, namespace: ns2 }), c.unit_id, undefined).reason).toBe(Reason.NOT_IN_NAMESPACE);
  });

  it("8. rollout bucket ≥ rollout → default NOT_IN_ROLLOUT; bucket < rollout → NEW (boundary from the vectors)", () => {
    const { unit_id, salt, rollout_bucket: rb, variant_bucket: vb } = boundary;
    const atBucket = exp3({ salt, rollout: rb });
    expect(decide(atBucket, unit_id, undefined)).toMatchObject({ reason: Reason.NOT_IN_ROLLOUT, variant: { key: "b" } });
    const justAbove = exp3({ salt, rollout: rb + 1 });
    const got = decide(justAbove, unit_id, undefined);
    expect(got.reason).toBe(Reason.NEW);
    expect(got.variant?.id).toBe(variantId(classicWalk(vb, [3000, 3000, 4000])));
    expect(decide(exp3({ salt, rollout: 0 }), unit_id, undefined).reason).toBe(Reason.NOT_IN_ROLLOUT);
    expect(decide(exp3({ salt, rollout: 10000 }), unit_id, undefined).reason).toBe(Reason.NEW);
  });

  it("8. rollout 0 enrolls nobody", () => {
    const exp = exp3({ rollout: 0 });
    for (let i = 0; i < 500; i++) expect(decide(exp, `user-${i}`, undefined).reason).toBe(Reason.NOT_IN_ROLLOUT);
  });

  it("9. otherwise NEW with the hashed variant (from the bucket vectors)", () => {
    const weights = [3000, 3000, 4000];
    let checked = 0;
    for (const c of vectors.buckets) {
      const got = decide(exp3({ salt: c.salt }), c.unit_id, undefined);
      expect(got.reason).toBe(Reason.NEW);
      expect(got.variant?.id).toBe(variantId(classicWalk(c.variant_bucket, weights)));
      checked++;
    }
    expect(checked).toBe(vectors.buckets.length);
  });

  it("the default variant is the named one, else the first", () => {
    const named = makeExperiment({ weights: [5000, 5000], keys: ["control", "treatment"], defaultVariantKey: "treatment", rollout: 0 });
    expect(named.defaultVariant.key).toBe("treatment");
    expect(decide(named, "u1", undefined).variant?.key).toBe("treatment");
    const unnamed = makeExperiment({ weights: [5000, 5000], keys: ["control", "treatment"], rollout: 0 });
    expect(unnamed.defaultVariant.key).toBe("control");
    expect(decide(unnamed, "u1", undefined).variant?.key).toBe("control");
    const draft = makeExperiment({ weights: [0, 10000], keys: ["x", "y"], status: ExperimentStatus.DRAFT });
    expect(decide(draft, "u1", undefined).variant?.key).toBe("x");
  });

  it("isEnrolled is true exactly for OVERRIDE, STICKY and NEW", () => {
    const enrolled = new Set([Reason.OVERRIDE, Reason.STICKY, Reason.NEW]);
    const all = Object.values(Reason).filter((v): v is Reason => typeof v === "number");
    expect(all.length).toBeGreaterThanOrEqual(12);
    for (const r of all) expect(isEnrolled(r), Reason[r]).toBe(enrolled.has(r));
  });

  it("needsStoreLookup: RUNNING and PAUSED always; DRAFT and STOPPED only when overrides exist", () => {
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.RUNNING }))).toBe(true);
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.PAUSED }))).toBe(true);
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.DRAFT }))).toBe(false);
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.STOPPED, winnerKey: "a" }))).toBe(false);
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.DRAFT, overrideCount: 1 }))).toBe(true);
    expect(needsStoreLookup(exp3({ status: ExperimentStatus.STOPPED, overrideCount: 3 }))).toBe(true);
  });
});

/** Calls fn, expects a ServiceError INVALID_ARGUMENT whose message names `field`; returns the message. */
function expectInvalid(fn: () => unknown, field: string): string {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a throw naming ${field}`).toBeInstanceOf(ServiceError);
  const err = caught as ServiceError;
  expect(err.code).toBe(status.INVALID_ARGUMENT);
  expect(err.message).toContain(field);
  return err.message;
}

const v = (key: string, weight: number): VariantInput => ({ key, weight });

describe("Names and limits: checkVariants", () => {
  it("accepts 1 to 100 variants summing to 10000", () => {
    expect(() => checkVariants("variants", [v("only", 10000)])).not.toThrow();
    expect(() => checkVariants("variants", [v("a", 5000), v("b", 5000)])).not.toThrow();
    expect(() => checkVariants("variants", [v("a", 0), v("b", 10000), v("c", 0)])).not.toThrow();
    const hundred = Array.from({ length: 100 }, (_, i) => v(`v${i}`, 100));
    expect(() => checkVariants("variants", hundred)).not.toThrow();
  });

  it("refuses weights that do not sum to exactly 10000", () => {
    for (const ws of [
      [5000, 4999],
      [5000, 5001],
      [0, 0],
      [10000, 1],
    ]) {
      const msg = expectInvalid(
        () =>
          checkVariants(
            "variants",
            ws.map((w, i) => v(`v${i}`, w)),
          ),
        "variants",
      );
      expect(msg).toContain("weight");
      expect(msg).toContain("10000");
    }
  });

  it("refuses duplicate keys, naming the repeated entry", () => {
    expectInvalid(() => checkVariants("variants", [v("a", 5000), v("a", 5000)]), "variants[1].key");
    expectInvalid(() => checkVariants("variants", [v("a", 2000), v("b", 3000), v("b", 5000)]), "variants[2].key");
  });

  it("refuses 0 and 101 variants", () => {
    expectInvalid(() => checkVariants("variants", []), "variants");
    const many = Array.from({ length: 101 }, (_, i) => v(`v${i}`, i === 0 ? 10000 : 0));
    const msg = expectInvalid(() => checkVariants("variants", many), "variants");
    expect(msg).toContain("100");
  });

  it("refuses a bad variant key, naming it", () => {
    for (const bad of ["", "-a", ".a", "_a", "a b", "a/b", "é", "a".repeat(65)]) {
      expectInvalid(() => checkVariants("variants", [v("ok", 5000), v(bad, 5000)]), "variants[1].key");
    }
  });

  it("refuses a weight outside 0..10000 or not an integer, naming it", () => {
    expectInvalid(() => checkVariants("variants", [v("a", 0), v("b", 10001)]), "variants[1].weight");
    expectInvalid(() => checkVariants("variants", [v("a", 10001), v("b", -1)]), "variants[0].weight");
    expectInvalid(() => checkVariants("variants", [v("a", 5000.5), v("b", 4999.5)]), "variants[0].weight");
    expectInvalid(() => checkVariants("variants", [v("a", 10000), v("b", Number.NaN)]), "variants[1].weight");
  });

  it("uses the field prefix it is given", () => {
    expectInvalid(() => checkVariants("experiment.variants", [v("a", 1), v("b", 10001)]), "experiment.variants[1].weight");
  });
});

describe("Names and limits: keys, unit types, unit ids, salts, basis points, segments", () => {
  it("checkKey / isValidKey: [a-z0-9][a-z0-9._-]{0,127}", () => {
    for (const good of ["a", "0", "pricing.2026-q4_x", "a".repeat(128), "9-lives"]) {
      expect(checkKey("key", good)).toBe(good);
      expect(isValidKey(good)).toBe(true);
    }
    for (const bad of ["", "A", "Checkout", "-a", ".a", "_a", "a".repeat(129), "a b", "é", "abc\n", "a:b"]) {
      expectInvalid(() => checkKey("experiment.key", bad), "experiment.key");
      expect(isValidKey(bad)).toBe(false);
    }
  });

  it("checkVariantKey: [A-Za-z0-9][A-Za-z0-9._-]{0,63}", () => {
    for (const good of ["A", "control", "Treatment-B", "v1.2_x", "x".repeat(64)]) expect(checkVariantKey("k", good)).toBe(good);
    for (const bad of ["", "-x", "x".repeat(65), "a b", "ü"]) expectInvalid(() => checkVariantKey("variant.key", bad), "variant.key");
  });

  it("checkUnitType: [a-z][a-z0-9_]{0,63}, empty defaults to user_id", () => {
    expect(checkUnitType("unit_type", "")).toBe("user_id");
    for (const good of ["user_id", "a", "device_id2", "a" + "0".repeat(63)]) {
      expect(checkUnitType("unit_type", good)).toBe(good);
      expect(isValidUnitType(good)).toBe(true);
    }
    for (const bad of ["1abc", "User_id", "_a", "a-b", "a.b", "a" + "0".repeat(64)]) {
      expectInvalid(() => checkUnitType("unit_type", bad), "unit_type");
      expect(isValidUnitType(bad)).toBe(false);
    }
  });

  it("checkUnitId: 1 to 512 UTF-8 bytes, no U+0000", () => {
    for (const good of ["x", "a".repeat(512), "😀".repeat(128), "é".repeat(171), "é".repeat(256)]) {
      expect(checkUnitId("unit_id", good)).toBe(good);
    }
    for (const bad of ["", "a".repeat(513), "é".repeat(257), "a\u0000b", "😀".repeat(128) + "a"]) {
      expectInvalid(() => checkUnitId("units[3]", bad), "units[3]");
    }
  });

  it("checkSalt: 1 to 256 UTF-8 bytes (257 refused, 256 ok)", () => {
    for (const good of ["s", "x".repeat(256), "é".repeat(128), "😀".repeat(64), "any thing: ü / 中"]) {
      expect(checkSalt("salt", good)).toBe(good);
    }
    for (const bad of ["", "x".repeat(257), "é".repeat(128) + "x", "😀".repeat(64) + "a", "中".repeat(86)]) {
      expectInvalid(() => checkSalt("experiment.salt", bad), "experiment.salt");
    }
  });

  it("checkBasisPoints: integers 0..10000", () => {
    for (const good of [0, 1, 5000, 10000]) expect(checkBasisPoints("rollout", good)).toBe(good);
    for (const bad of [-1, 10001, 0.5, Number.NaN, Infinity]) expectInvalid(() => checkBasisPoints("rollout", bad), "rollout");
  });

  it("checkSegments: integers 1..100000", () => {
    for (const good of [1, 10000, 100000]) expect(checkSegments("segments", good)).toBe(good);
    for (const bad of [0, -1, 100001, 1.5]) expectInvalid(() => checkSegments("namespace.segments", bad), "namespace.segments");
  });
});
