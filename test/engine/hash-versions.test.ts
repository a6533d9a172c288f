/**
 * Hash versions are dispatched in one place (`hash(s, version)`), and a recorded version this
 * server cannot compute is refused in one place (`requireHashVersion`), for experiments and
 * namespaces alike.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildExperimentConfig,
  buildNamespaceConfig,
  CURRENT_HASH_VERSION,
  HASH_VERSIONS,
  type HashVersion,
  hash,
  requireHashVersion,
  UnknownHashVersionError,
} from "../../src/engine/index.js";
import { makeExperiment, referenceH } from "./helpers.js";

describe("hash(s, version)", () => {
  it("version 1 is SPEC.md's H (reference MurmurHash3)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 64 }), (s) => {
        expect(hash(s, 1)).toBe(referenceH(s));
      }),
    );
  });

  it("knows exactly the listed versions; new experiments and namespaces get the current one", () => {
    expect(HASH_VERSIONS).toEqual([1]);
    expect(CURRENT_HASH_VERSION).toBe(1);
    expect(() => hash("x", 2 as HashVersion)).toThrow(UnknownHashVersionError);
  });
});

describe("requireHashVersion", () => {
  it.each([1])("accepts %i", (v) => expect(requireHashVersion("experiment", v)).toBe(v));
  it.each([0, 2, -1, 1.5])("refuses %s, naming what and which", (v) => {
    expect(() => requireHashVersion('experiment "x"', v)).toThrow(new UnknownHashVersionError('experiment "x"', v));
    expect(() => requireHashVersion('experiment "x"', v)).toThrow(
      `experiment "x" uses hash version ${v}, which this server cannot evaluate`,
    );
  });

  it("guards the building of experiment and namespace configurations", () => {
    const e = makeExperiment({ key: "future" });
    expect(() =>
      buildExperimentConfig({
        ...e,
        hashVersion: 2,
        variants: [...e.variants],
        defaultVariantKey: undefined,
        winnerKey: undefined,
        tags: [],
      }),
    ).toThrow('experiment "future" uses hash version 2');
    const ns = { id: 1, key: "ns", salt: "s", unitType: "user_id", segments: 4, allocations: [[2, 7] as const] };
    expect(buildNamespaceConfig({ ...ns, hashVersion: 1 }).owners).toEqual(Int32Array.from([0, 0, 7, 0]));
    expect(() => buildNamespaceConfig({ ...ns, hashVersion: 3 })).toThrow('namespace "ns" uses hash version 3');
  });
});
