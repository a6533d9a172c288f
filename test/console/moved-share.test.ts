/**
 * The weights preview of the console (console/src/format.ts): which share of future new units
 * gets another variant when the weights change. Expected values by hand from SPEC.md's rule (the
 * first variant i with bucket < w_0 + ... + w_i), over the 10,000 variant buckets.
 */
import { describe, expect, it } from "vitest";
import { movedShare } from "../../console/src/format.js";

describe("movedShare", () => {
  it("counts the variant buckets whose variant changes", () => {
    // 50/50 -> 40/60: buckets 4000..4999 go from the first variant to the second.
    expect(movedShare([5000, 5000], [4000, 6000])).toBe(0.1);
    // 25/75 -> 75/25: buckets 2500..7499 change.
    expect(movedShare([2500, 7500], [7500, 2500])).toBe(0.5);
    // A variant appended with half the weight: buckets 5000..9999 go to it.
    expect(movedShare([10000], [5000, 5000])).toBe(0.5);
    // 34/33/33 -> 33/33/34: buckets 3300..3399 go from the first to the second, 6600..6699 from the second to the third.
    expect(movedShare([3400, 3300, 3300], [3300, 3300, 3400])).toBe(0.02);
  });

  it("is zero when nothing changes", () => {
    expect(movedShare([2000, 3000, 5000], [2000, 3000, 5000])).toBe(0);
  });
});
