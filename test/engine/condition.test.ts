/**
 * Targeting conditions (SPEC.md rule 8 and "Names and limits") and attributes: what is refused
 * when saved (naming the field, and the line and column where it can), and that at evaluation
 * only `true` targets, while a missing attribute or a type error is "not true" and never throws.
 */
import { describe, expect, it } from "vitest";
import { Code, ServiceError } from "../../src/errors.js";
import { checkAttributes, compileCondition, mergeAttributes } from "../../src/engine/index.js";

const attrs = (o: Record<string, unknown>) => checkAttributes("attributes", o);

function refusal(f: () => unknown): ServiceError {
  try {
    f();
  } catch (err) {
    if (err instanceof ServiceError) return err;
    throw err;
  }
  throw new Error("not refused");
}

describe("a condition, evaluated", () => {
  const cases: [string, Record<string, unknown>, boolean][] = [
    ['attributes.country == "US"', { country: "US" }, true],
    ['attributes.country == "US"', { country: "DE" }, false],
    ['attributes.country == "US" && attributes.version >= 5.2', { country: "US", version: 5.3 }, true],
    ['attributes.country == "US" && attributes.version >= 5.2', { country: "US", version: 5 }, false],
    ["attributes.version >= 5", { version: 5 }, true],
    ['"beta" in attributes.groups', { groups: ["alpha", "beta"] }, true],
    ['attributes.groups.exists(g, g.startsWith("be"))', { groups: ["alpha"] }, false],
    ["attributes.pro", { pro: true }, true],
    ["!attributes.pro", { pro: true }, false],
    ['has(attributes.country) && attributes.country != "US"', {}, false],
    ['!has(attributes.country) || attributes.country != "US"', {}, true],
    // a missing attribute: not true, whatever the operator
    ['attributes.country == "US"', {}, false],
    ['attributes.country != "US"', {}, false],
    // a type error: not true
    ['attributes.version > "5"', { version: 7 }, false],
    ["attributes.n + 1 > 2", { n: 2 }, false],
    ["attributes.n + 1.0 > 2.0", { n: 2 }, true],
    // a non-boolean result: not true
    ["attributes.country", { country: "US" }, false],
  ];
  for (const [source, a, want] of cases) {
    it(`${source} with ${JSON.stringify(a)} is ${want}`, () => {
      expect(compileCondition("condition", source).test(attrs(a))).toBe(want);
    });
  }
});

describe("a condition, refused when saved", () => {
  const cases: [string, string, RegExp][] = [
    ["too long", `attributes.a == "${"x".repeat(4097 - 18)}"`, /at most 4096 bytes \(got 4097\)/],
    ["empty", "  ", /empty/],
    ["does not parse", "attributes.country ==", /does not parse as CEL at line 1, column 2\d/],
    ["unknown variable", 'country == "US"', /line 1, column 1: unknown variable "country"/],
    ["unknown variable on line 2", "attributes.a == 1 &&\n  user.b == 2", /line 2, column 3: unknown variable "user"/],
    ["unknown function", "nosuch(attributes.a)", /unknown function "nosuch"/],
    ["never boolean: arithmetic", "attributes.n + 1", /must be a boolean expression/],
    ["never boolean: a string", '"US"', /must be a boolean expression/],
    ["never boolean: the map itself", "attributes", /must be a boolean expression/],
  ];
  for (const [what, source, message] of cases) {
    it(what, () => {
      const err = refusal(() => compileCondition("experiment.condition", source));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toMatch(/^experiment\.condition: /);
      expect(err.message).toMatch(message);
    });
  }

  it("4096 bytes are accepted", () => {
    const source = `attributes.a == "${"x".repeat(4096 - 18)}"`;
    expect(new TextEncoder().encode(source).length).toBe(4096);
    const c = compileCondition("c", source);
    expect(c.test(attrs({ a: "x" }))).toBe(false);
    expect(c.test(new Map([["a", "x".repeat(4096 - 18)]]))).toBe(true);
  });

  it("comprehension variables are in scope only inside", () => {
    expect(() => compileCondition("c", "attributes.g.all(x, x > 1.0)")).not.toThrow();
    expect(refusal(() => compileCondition("c", "attributes.g.all(x, x > 1.0) && x > 1.0")).message).toMatch(/unknown variable "x"/);
  });
});

describe("attributes", () => {
  it("take strings, finite numbers, booleans and lists of those", () => {
    const a = attrs({ country: "US", version: 5.2, pro: false, groups: ["a", 1, true] });
    expect([...a.keys()]).toEqual(["country", "version", "pro", "groups"]);
  });
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["65 of them", Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`a${i}`, i])), /at most 64 attributes \(got 65\)/],
    ["a key with a space", { "my key": 1 }, /attributes\."my key": keys must match/],
    ["a key starting with a digit", { "1a": 1 }, /keys must match/],
    ["a nested object", { device: { os: "ios" } }, /attributes\.device: must be a string, a finite number, a boolean or a list of those/],
    ["null", { x: null }, /attributes\.x: must be/],
    ["a list holding an object", { xs: [{ a: 1 }] }, /attributes\.xs: a list may hold only/],
    ["a value over 1 KiB", { s: "é".repeat(513) }, /attributes\.s: must be at most 1024 bytes/],
    ["NaN", { n: Number.NaN }, /attributes\.n: must be/],
  ];
  for (const [what, input, message] of bad) {
    it(`refuse ${what}`, () => {
      const err = refusal(() => attrs(input));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.message).toMatch(message);
    });
  }
  it("a unit's own values win over the call's, key by key", () => {
    const merged = mergeAttributes(attrs({ country: "US", pro: true }), attrs({ country: "DE" }));
    expect(Object.fromEntries(merged)).toEqual({ country: "DE", pro: true });
  });
});

describe("the fast evaluation of common conditions agrees with @bufbuild/cel's evaluator", () => {
  // Every shape the fast path takes, and some it leaves to CEL, against attributes of every type,
  // missing ones and mixed types: the answer of each pair must equal the general evaluator's.
  const conditions = [
    'attributes.country == "US"',
    'attributes.country != "US"',
    "attributes.version >= 5.2",
    "attributes.version >= 5",
    "attributes.version < 5",
    "attributes.version <= 5.0",
    "attributes.version > -1",
    'attributes.country > "DE"',
    'attributes.country < "é"',
    "attributes.pro == true",
    "attributes.pro",
    "!attributes.pro",
    "attributes.pro > false",
    'attributes.country in ["US", "CA"]',
    "attributes.version in [5, 5.3, 6]",
    '"beta" in attributes.groups',
    '"country" in attributes',
    "has(attributes.country)",
    "!has(attributes.country)",
    'attributes.groups == ["alpha", "beta"]',
    'attributes.country == "US" && attributes.version >= 5.2 && attributes.tier in ["gold", "silver"] && attributes.age >= 18 && attributes.pro == false',
    'attributes.country == "US" || attributes.version >= 5',
    '!(attributes.country == "US") || attributes.pro',
    'attributes.country == 1 || attributes.version == "5"',
    "attributes.version == attributes.age",
    "attributes.version < attributes.age",
    "attributes.country in attributes.groups",
    "true",
    "false && attributes.missing",
    "attributes.missing || true",
    "attributes.missing && false",
    'attributes.country.startsWith("U")',
    "size(attributes.groups) > 1",
  ];
  const attributeSets: Record<string, unknown>[] = [
    {},
    { country: "US", version: 5.3, tier: "gold", age: 18, pro: false, groups: ["alpha", "beta"] },
    { country: "CA", version: 5, tier: "silver", age: 17.5, pro: true, groups: ["beta"] },
    { country: "DE", version: 6, groups: [] },
    { country: "é", version: -2, pro: "yes", groups: "beta" },
    { country: 1, version: "5", age: 5 },
    { country: "𝔘", version: 5.2, age: 5.2, groups: ["US", 1, true] },
    { country: ["US"], pro: 1, tier: "bronze", age: 99 },
  ];
  it.each(conditions)("%s", (source) => {
    const fast = compileCondition("condition", source);
    const cel = compileCondition("condition", source, "cel");
    for (const o of attributeSets) expect(fast.test(attrs(o)), JSON.stringify(o)).toBe(cel.test(attrs(o)));
  });
});
