/**
 * spec/vectors/rules-v1.json, made by an independent reference: the whole rule order of SPEC.md
 * "Evaluating one unit for one experiment" (holdouts and the targeting outcome included) and the
 * merging of namespace parameters. Every case is fed to the engine as the vector states it and
 * the engine's answer must equal the vector's; a count assertion makes sure none is skipped.
 *
 * How the vector's fields reach the engine: the unit's override (when it has one) is what the
 * store hands decide() with source OVERRIDE, else its stored assignment with source HASH (the
 * assigner looks overrides up first; SPEC rule 3 before rule 5); `condition` is the outcome of
 * the experiment's targeting condition (null: it has none); `valid: false` is an invalid id and
 * `type_matches: false` a call that named another unit type.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { JsonObject } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { buildNamespaceConfig, decide, isEnrolled, mergeParams, refuseUnit, storedValue } from "../../src/engine/index.js";
import { makeExperiment, repoRoot, variantId } from "./helpers.js";

interface RuleCase {
  experiment: {
    status: keyof typeof ExperimentStatus;
    salt: string;
    weights: number[];
    rollout: number;
    default: number;
    winner: number | null;
    namespace: { salt: string; segments: number; owned: number[] } | null;
    holdouts: { salt: string; share: number }[];
    condition: boolean | null;
  };
  unit: { unit_id: string; valid: boolean; type_matches: boolean; override: number | null; stored: number | null };
  expect: { reason: keyof typeof Reason; variant: number | null; enrolled: boolean; stored_now: boolean };
}
interface ParamsCase {
  defaults: JsonObject;
  variant_params: JsonObject | null;
  merged: JsonObject;
}
const file = JSON.parse(readFileSync(path.join(repoRoot, "spec/vectors/rules-v1.json"), "utf8")) as {
  spec_version: number;
  rules: RuleCase[];
  params: ParamsCase[];
};

const EXPERIMENT_ID = 7;
const UNIT_TYPE = "user_id";

function answer(c: RuleCase) {
  const e = c.experiment;
  const keys = e.weights.map((_, i) => `v${i}`);
  const experiment = makeExperiment({
    id: EXPERIMENT_ID,
    key: "rules",
    salt: e.salt,
    unitType: UNIT_TYPE,
    weights: e.weights,
    keys,
    rollout: e.rollout,
    status: ExperimentStatus[e.status],
    defaultVariantKey: keys[e.default],
    winnerKey: e.winner === null ? undefined : keys[e.winner],
    namespace: e.namespace
      ? buildNamespaceConfig({
          id: 3,
          key: "ns",
          salt: e.namespace.salt,
          unitType: UNIT_TYPE,
          hashVersion: 1,
          segments: e.namespace.segments,
          allocations: e.namespace.owned.map((s) => [s, EXPERIMENT_ID] as const),
        })
      : undefined,
    holdouts: e.holdouts.map((h, i) => ({ id: i + 1, key: `h${i}`, salt: h.salt, hashVersion: 1, share: h.share })),
  });
  const u = c.unit;
  const refused = refuseUnit(experiment, u.valid ? u.unit_id : "", u.type_matches ? UNIT_TYPE : "device_id");
  const stored =
    u.override !== null
      ? storedValue(variantId(u.override), Source.OVERRIDE)
      : u.stored !== null
        ? storedValue(variantId(u.stored), Source.HASH)
        : undefined;
  const ev = refused ?? decide(experiment, u.unit_id, stored, e.condition ?? undefined);
  const index = ev.variant ? experiment.variants.indexOf(ev.variant) : -1;
  return {
    reason: Reason[ev.reason] as keyof typeof Reason,
    variant: index < 0 ? null : index,
    enrolled: isEnrolled(ev.reason),
    stored_now: ev.reason === Reason.NEW,
  };
}

describe("rules-v1.json", () => {
  it("is spec version 1, with rule and params cases", () => {
    expect(file.spec_version).toBe(1);
    expect(file.rules.length).toBeGreaterThan(0);
    expect(file.params.length).toBeGreaterThan(0);
  });

  it("every rule-order case gives the vector's reason, variant, enrolled and stored_now", () => {
    const failures: string[] = [];
    for (const [i, c] of file.rules.entries()) {
      const got = answer(c);
      if (JSON.stringify(got) !== JSON.stringify(c.expect)) {
        failures.push(`case ${i}: got ${JSON.stringify(got)}, want ${JSON.stringify(c.expect)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("covers every reason SPEC names beyond UNKNOWN_EXPERIMENT (which needs no experiment)", () => {
    const seen = new Set(file.rules.map((c) => c.expect.reason));
    const named = Object.keys(Reason).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED" && k !== "UNKNOWN_EXPERIMENT");
    expect([...named].filter((r) => !seen.has(r as keyof typeof Reason))).toEqual([]);
  });

  it("every params case merges to the vector's result", () => {
    const failures: string[] = [];
    for (const [i, c] of file.params.entries()) {
      const got = mergeParams(c.defaults, c.variant_params ?? undefined);
      if (JSON.stringify(sorted(got)) !== JSON.stringify(sorted(c.merged))) {
        failures.push(`case ${i}: got ${JSON.stringify(got)}, want ${JSON.stringify(c.merged)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

/** Objects with their keys sorted, recursively: key order is not part of the result. */
function sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sorted);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
