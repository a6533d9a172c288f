/** utf8ByteLength counts as Node's Buffer.byteLength does (the engine may not use Buffer). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { utf8ByteLength } from "../../src/engine/index.js";

describe("utf8ByteLength", () => {
  it.each([
    ["", 0],
    ["abc", 3],
    ["é", 2],
    ["€", 3],
    ["😀", 4],
    ["\ud800", 3], // a lone surrogate is written as U+FFFD
    ["\udc00x", 4],
  ])("%j is %i bytes", (s, n) => expect(utf8ByteLength(s)).toBe(n));

  it("equals Buffer.byteLength for any string, lone surrogates included", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => utf8ByteLength(s) === Buffer.byteLength(s, "utf8")));
  });
});
