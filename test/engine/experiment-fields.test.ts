/** The rules of an experiment's other fields (status, tags, description, params, named variants). */
import { describe, expect, it } from "vitest";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { Code, ServiceError } from "../../src/errors.js";
import { checkDescription, checkParams, checkParamsTotal, checkStatus, checkTags, checkVariantNamed } from "../../src/engine/index.js";

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ServiceError && err.code === Code.InvalidArgument) return err.message;
    throw err;
  }
  throw new Error("expected INVALID_ARGUMENT");
}

describe("checkStatus", () => {
  it.each([ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED, ExperimentStatus.STOPPED])("accepts %s", (s) => {
    expect(checkStatus("status", s)).toBe(s);
  });
  it.each([ExperimentStatus.UNSPECIFIED, 99 as ExperimentStatus])("refuses %s", (s) => {
    expect(refusal(() => checkStatus("status", s))).toBe("status: must be DRAFT, RUNNING, PAUSED or STOPPED");
  });
});

describe("checkTags", () => {
  it.each<[string[], string[]]>([
    [[], []],
    [
      ["web", "checkout"],
      ["web", "checkout"],
    ],
    [
      ["web", "web", "app"],
      ["web", "app"],
    ],
    [Array.from({ length: 100 }, (_, i) => `t${i}`), Array.from({ length: 100 }, (_, i) => `t${i}`)],
  ])("%j -> %j", (tags, expected) => {
    expect(checkTags("tags", tags)).toEqual(expected);
  });
  it.each<[string[], string]>([
    [Array.from({ length: 101 }, (_, i) => `t${i}`), "tags: must hold at most 100 tags"],
    [["ok", "Not OK"], "tags[1]: must match [a-z0-9][a-z0-9._-]{0,127}"],
    [[""], "tags[0]: must match"],
  ])("refuses %#", (tags, message) => {
    expect(refusal(() => checkTags("tags", tags)).startsWith(message)).toBe(true);
  });
});

describe("checkDescription", () => {
  it.each(["", "plain", "é".repeat(5_000), "x".repeat(10_000)])("accepts %#", (d) => {
    expect(checkDescription("description", d)).toBe(d);
  });
  it.each(["x".repeat(10_001), "é".repeat(5_001), "a\u0000b"])("refuses %#", (d) => {
    expect(refusal(() => checkDescription("description", d))).toBe("description: must be at most 10000 bytes without U+0000");
  });
});

describe("checkVariantNamed", () => {
  const variants = [{ key: "a" }, { key: "b" }];
  it("answers a key that names a variant", () => expect(checkVariantNamed("winner", variants, "b")).toBe("b"));
  it("refuses one that does not, listing them", () =>
    expect(refusal(() => checkVariantNamed("winner", variants, "c"))).toBe("winner: must name one of the variants (a, b)"));
});

describe("checkParams", () => {
  it.each([undefined, {}])("none for %j", (p) => expect(checkParams("p", p)).toBeUndefined());
  it("keeps any JSON jsonb can hold", () => {
    const p = { s: "é", n: -0.5, b: true, z: null, list: [1, "two", { three: 3 }], nested: { deep: { deeper: [] } } };
    expect(checkParams("p", p)).toBe(p);
  });
  it.each([
    [{ k: "a\u0000" }, "p: must not contain U+0000"],
    [{ "k\u0000": 1 }, "p: must not contain U+0000"],
    [{ x: Number.NaN }, "p: numbers must be finite (JSON has no NaN or infinities)"],
    [{ x: [Number.POSITIVE_INFINITY] }, "p: numbers must be finite (JSON has no NaN or infinities)"],
    [{ s: "x".repeat(16_384) }, "p: must be at most 16384 bytes as JSON"],
  ])("refuses %#", (p, message) => {
    expect(refusal(() => checkParams("p", p))).toBe(message);
  });
  it("counts bytes, not characters", () => {
    // {"s":"…"} is 8 bytes around the value: 16,376 bytes of value fit, as 8,188 two-byte characters.
    expect(checkParams("p", { s: "é".repeat(8_188) })).toBeDefined();
    expect(refusal(() => checkParams("p", { s: "é".repeat(8_189) }))).toBe("p: must be at most 16384 bytes as JSON");
  });
});

describe("checkParamsTotal", () => {
  const of = (bytes: number) => ({ params: { s: "x".repeat(bytes - 8) } });
  it("accepts 65,536 bytes in all", () => expect(() => checkParamsTotal("v", [of(32_768), of(32_768), {}])).not.toThrow());
  it("refuses one more", () =>
    expect(refusal(() => checkParamsTotal("v", [of(32_768), of(32_769)]))).toBe(
      "v: params of all variants together must be at most 65536 bytes as JSON (got 65537)",
    ));
});
