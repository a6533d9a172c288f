/**
 * PartitionLayoutCache (src/store/partition-layout.ts) with the catalog's answers in hand: a read
 * of the catalog begun before invalidate() (a statement found a partition gone) never brings the
 * old layout back, and the next page load reads the catalog again. The catalog query itself is
 * tested against PostgreSQL in partitioning.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { Queryable } from "../../src/store/database.js";
import { PartitionLayoutCache } from "../../src/store/partition-layout.js";

/** A database whose catalog answers are given by the test, one query at a time. */
function catalog() {
  const pending: Array<(names: string[]) => void> = [];
  const db: Queryable = {
    query: <R>() =>
      new Promise<{ rows: R[]; rowCount: number }>((resolve) =>
        pending.push((names) =>
          resolve({ rows: [{ names, bounds: names.map(() => "FOR VALUES WITH (modulus 1, remainder 0)") } as R], rowCount: 1 }),
        ),
      ),
  };
  return { db, pending };
}

describe("PartitionLayoutCache", () => {
  it("drops a catalog read begun before invalidate(), and reads again at the next page load", async () => {
    const { db, pending } = catalog();
    const cache = new PartitionLayoutCache(db, 60_000);
    expect(cache.current()).toBeUndefined(); // starts the first read
    expect(pending).toHaveLength(1);
    const first = cache.refresh(); // joins it
    expect(pending).toHaveLength(1);
    pending.shift()!(["assignments_p0"]);
    await first;
    expect(cache.current()?.partitionOf("u")).toBe("assignments_p0");
    expect(pending).toHaveLength(0); // fresh: no new read

    // A read under way (started by refresh) when a statement finds the partition gone.
    const stale = cache.refresh();
    cache.invalidate();
    expect(cache.current()).toBeUndefined(); // the table itself, and a new read begun
    expect(pending).toHaveLength(2);
    pending.shift()!(["assignments_p0"]); // the old read answers the old layout…
    await stale;
    expect(cache.current()).toBeUndefined(); // …which is dropped
    pending.shift()!(["moved_p0"]);
    await cache.refresh();
    expect(cache.current()?.partitionOf("u")).toBe("moved_p0");
  });

  it("answers the table itself after a failed read, and reports it", async () => {
    const errors: unknown[] = [];
    const cache = new PartitionLayoutCache({ query: () => Promise.reject(new Error("down")) }, 60_000, (e) => errors.push(e));
    await cache.refresh();
    expect(cache.current()).toBeUndefined();
    expect(errors.map(String)).toEqual(["Error: down"]);
  });
});
