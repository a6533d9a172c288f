/**
 * The repository keeps its own copy of the assignment contract (spec/SPEC.md and spec/vectors/),
 * so that a clone alone is complete. The contract is handed over in a sibling folder `shared/`;
 * when that folder exists, the copy must be identical to it, byte for byte, so a changed contract
 * cannot go unnoticed. Without the sibling (a plain clone) there is nothing to compare with, and
 * the copy must still hold every file the tests read.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const copy = path.join(repoRoot, "spec");
const handedOver = path.resolve(repoRoot, "../shared");

/** SPEC.md and every vector file, relative to the contract folder. */
function contractFiles(dir: string): string[] {
  return ["SPEC.md", ...readdirSync(path.join(dir, "vectors")).map((f) => `vectors/${f}`)].sort();
}

describe("the repository's copy of the contract", () => {
  it("holds SPEC.md and the vectors, identical to the contract handed over in ../shared when that exists", () => {
    const files = contractFiles(copy);
    expect(files).toEqual(expect.arrayContaining(["SPEC.md", "vectors/assignment-v1.json", "vectors/rules-v1.json"]));
    expect(readFileSync(path.join(copy, "SPEC.md"), "utf8")).toMatch(/^# Assignment contract \(normative\)$/m);
    if (!existsSync(path.join(handedOver, "SPEC.md"))) return; // a plain clone: nothing to compare with
    expect(files).toEqual(contractFiles(handedOver));
    for (const f of files) {
      expect(readFileSync(path.join(copy, f)).equals(readFileSync(path.join(handedOver, f))), `spec/${f} differs from ../shared/${f}`).toBe(
        true,
      );
    }
  });
});
