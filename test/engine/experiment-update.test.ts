/**
 * UpdateExperiment's rule (SPEC.md "What may change after creation"), as a pure function: variants
 * are appended, never reordered, and keep their ids; default and winner must name a variant.
 */
import { describe, expect, it } from "vitest";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { Code, ServiceError } from "../../src/errors.js";
import { applyExperimentChanges, type ExperimentChanges, type ExperimentState, mergeVariants } from "../../src/engine/index.js";

const v = (id: number, key: string, weight: number) => ({ id, key, weight });
/** a(0), b(1), c(4): ids need not be positions (c came after two removed variants). */
const current: ExperimentState = {
  variants: [v(0, "a", 3000), v(1, "b", 3000), v(4, "c", 4000)],
  rollout: 10_000,
  status: ExperimentStatus.RUNNING,
  defaultVariant: "b",
  winner: null,
  tags: ["web"],
  description: "before",
  condition: "",
};

function refusal(fn: () => unknown): ServiceError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ServiceError) return err;
    throw err;
  }
  throw new Error("expected a ServiceError");
}

describe("mergeVariants", () => {
  it.each([
    ["same keys, new weights: ids kept", ["a:5000", "b:2500", "c:2500"], [v(0, "a", 5000), v(1, "b", 2500), v(4, "c", 2500)]],
    [
      "one appended: the next id after the highest",
      ["a:2500", "b:2500", "c:2500", "d:2500"],
      [v(0, "a", 2500), v(1, "b", 2500), v(4, "c", 2500), v(5, "d", 2500)],
    ],
    [
      "two appended",
      ["a:2500", "b:2500", "c:2500", "d:1250", "e:1250"],
      [v(0, "a", 2500), v(1, "b", 2500), v(4, "c", 2500), v(5, "d", 1250), v(6, "e", 1250)],
    ],
    ["a middle one removed: the others keep their ids", ["a:5000", "c:5000"], [v(0, "a", 5000), v(4, "c", 5000)]],
    ["removed and appended at once", ["a:5000", "z:5000"], [v(0, "a", 5000), v(5, "z", 5000)]],
  ])("%s", (_name, requested, expected) => {
    const changes = requested.map((s) => ({ key: s.split(":")[0]!, weight: Number(s.split(":")[1]) }));
    expect(mergeVariants("variants.variants", current.variants, changes)).toEqual(expected.map((x) => ({ ...x, params: undefined })));
  });

  it.each([
    ["existing ones reordered", ["b:3000", "a:3000", "c:4000"], "variants.variants: existing variants must keep their order"],
    [
      "a new one before an existing one",
      ["a:3000", "new:3000", "b:2000", "c:2000"],
      "variants.variants[2]: new variants must come after the existing ones",
    ],
  ])("refuses %s (INVALID_ARGUMENT naming the field)", (_name, requested, message) => {
    const changes = requested.map((s) => ({ key: s.split(":")[0]!, weight: Number(s.split(":")[1]) }));
    const err = refusal(() => mergeVariants("variants.variants", current.variants, changes));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.message.startsWith(message)).toBe(true);
  });

  it("checks params per variant and together, naming the variant", () => {
    const bad = [{ key: "a", weight: 10_000, params: { x: Number.NaN } }];
    expect(refusal(() => mergeVariants("variants.variants", current.variants, bad)).message).toMatch(/^variants\.variants\[0\]\.params: /);
    const big = { s: "x".repeat(15_000) };
    const many = ["a", "b", "c", "d", "e"].map((key) => ({ key, weight: 2000, params: big }));
    expect(refusal(() => mergeVariants("variants.variants", current.variants, many)).message).toMatch(
      /^variants\.variants\[\]\.params: params of all variants together must be at most 65536 bytes/,
    );
    // Empty params are none.
    expect(mergeVariants("variants.variants", current.variants, [{ key: "a", weight: 10_000, params: {} }])).toEqual([
      { id: 0, key: "a", weight: 10_000, params: undefined },
    ]);
  });
});

describe("applyExperimentChanges", () => {
  it("changes nothing when nothing is asked", () => {
    expect(applyExperimentChanges(current, {})).toEqual(current);
  });

  it.each<[string, ExperimentChanges, Partial<ExperimentState>]>([
    ["rollout", { rollout: 2500 }, { rollout: 2500 }],
    ["status", { status: ExperimentStatus.PAUSED }, { status: ExperimentStatus.PAUSED }],
    ["winner set", { winner: "c" }, { winner: "c" }],
    ["default changed", { defaultVariant: "a" }, { defaultVariant: "a" }],
    ["default cleared (the first variant then)", { defaultVariant: "" }, { defaultVariant: null }],
    ["tags and description", { tags: ["app"], description: "after" }, { tags: ["app"], description: "after" }],
  ])("%s", (_name, changes, expected) => {
    expect(applyExperimentChanges(current, changes)).toEqual({ ...current, ...expected });
  });

  it("clears a winner with an empty name", () => {
    expect(applyExperimentChanges({ ...current, winner: "a" }, { winner: "" }).winner).toBeNull();
  });

  it.each<[string, ExperimentState, ExperimentChanges, number, string]>([
    ["a winner naming no variant", current, { winner: "zz" }, Code.InvalidArgument, "winner: must name one of the variants (a, b, c)"],
    ["a winner that is not a variant key at all", current, { winner: "no way" }, Code.InvalidArgument, "winner: must match"],
    [
      "a default naming no variant",
      current,
      { defaultVariant: "zz" },
      Code.InvalidArgument,
      "default_variant: must name one of the variants",
    ],
    [
      "removing the default variant",
      current,
      {
        variants: [
          { key: "a", weight: 5000 },
          { key: "c", weight: 5000 },
        ],
      },
      Code.FailedPrecondition,
      'default_variant: "b" is no longer a variant',
    ],
    [
      "removing the winner",
      { ...current, winner: "c", defaultVariant: null },
      {
        variants: [
          { key: "a", weight: 5000 },
          { key: "b", weight: 5000 },
        ],
      },
      Code.FailedPrecondition,
      'winner: "c" is no longer a variant',
    ],
  ])("refuses %s", (_name, state, changes, code, message) => {
    const err = refusal(() => applyExperimentChanges(state, changes));
    expect([err.code, err.message.startsWith(message)]).toEqual([code, true]);
  });

  it("a removal and a new default in the same call", () => {
    const next = applyExperimentChanges(current, {
      variants: [
        { key: "a", weight: 5000 },
        { key: "c", weight: 5000 },
      ],
      defaultVariant: "c",
    });
    expect([next.variants.map((x) => x.id), next.defaultVariant]).toEqual([[0, 4], "c"]);
  });
});
