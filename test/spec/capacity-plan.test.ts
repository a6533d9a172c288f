/**
 * docs/capacity.md shows the plan that scripts/capacity-plan.mjs computes from its inputs: the
 * table in the document is the script's output, verbatim, so that a changed input (a new
 * measurement) cannot leave the document behind. The arithmetic is checked on two rows against
 * figures worked by hand from the document's own measurements.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const run = (...args: string[]) => execFileSync(process.execPath, ["scripts/capacity-plan.mjs", ...args], { encoding: "utf8" });

describe("the capacity plan", () => {
  it("docs/capacity.md holds the script's output verbatim", () => {
    const doc = readFileSync("docs/capacity.md", "utf8");
    expect(doc).toContain(run().trim());
  });

  it("follows its inputs: 5e9 rows x 189.8 B = 949 GB; 128 partitions of 5e9 rows hold 39,062,500 each", () => {
    expect(run()).toContain("| PostgreSQL table + index | 949 GB |");
    expect(run("--partitions=128")).toContain("| one of 128 partitions | 39,062,500 rows, 7.4 GB |");
  });

  it("refuses an input it does not know", () => {
    expect(() => execFileSync(process.execPath, ["scripts/capacity-plan.mjs", "--nonsense=1"], { stdio: "pipe" })).toThrow();
  });
});
