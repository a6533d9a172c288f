/**
 * hashPartitionRemainder (src/store/partition-remainder.ts) against PostgreSQL itself: for every id,
 * the remainder the database's hash partitioning gives it (satisfies_hash_partition on a table
 * partitioned by hash of text COLLATE "C", as assignments is) must be the one computed here, for
 * several moduli. Ids of every kind of UTF-8 (1 to 4 bytes a character, lone surrogates, which are
 * sent as U+FFFD) and length (0 to 40 bytes crosses lookup3's 12-byte blocks; past 1,024 takes the
 * encoder instead of the ASCII buffer).
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPartitionRemainder } from "../../src/store/partition-remainder.js";
import { freshDatabase } from "../support/services.js";

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let client: pg.Client;
beforeAll(async () => {
  fresh = await freshDatabase();
  client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
  await client.query(`CREATE TABLE hashed (unit_id text COLLATE "C") PARTITION BY HASH (unit_id)`);
});
afterAll(async () => {
  await client?.end();
  await fresh?.drop();
});

/** The remainder by `modulus` of each id, as the database computes it. */
async function databaseRemainders(ids: string[], modulus: number): Promise<number[]> {
  const { rows } = await client.query<{ r: number | null }>(
    `SELECT (SELECT r FROM generate_series(0, $2::int - 1) r WHERE satisfies_hash_partition('hashed'::regclass, $2::int, r, u.id)) AS r
       FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n`,
    [ids, modulus],
  );
  return rows.map((row) => row.r ?? -1);
}

const fixed = [
  "",
  "a",
  "imp-3-12345",
  "user-000000000001", // 17 bytes
  "x".repeat(12),
  "x".repeat(24),
  "é",
  "中文字符串",
  "🙂🙂🙂",
  "\ud800",
  "a\udfffb",
  "y".repeat(1_023),
  "y".repeat(1_024),
  "y".repeat(1_025),
  `${"z".repeat(1_030)}é`,
];

describe("hashPartitionRemainder", () => {
  it("gives every id the remainder PostgreSQL's hash partitioning gives it", async () => {
    const ids = [
      ...fixed,
      ...fc.sample(fc.string({ unit: "binary", maxLength: 40 }), { numRuns: 1_000, seed: 17 }),
      ...fc.sample(fc.string({ unit: "grapheme-ascii", maxLength: 40 }), { numRuns: 1_000, seed: 18 }),
      ...fc.sample(fc.string({ unit: fc.constantFrom("a", "é", "中", "🙂", "\ud83d"), maxLength: 20 }), { numRuns: 500, seed: 19 }),
    ].filter((id) => !id.includes("\u0000")); // text cannot hold NUL
    for (const modulus of [16, 7, 1, 1024, 1000]) {
      const want = await databaseRemainders(ids, modulus);
      const got = ids.map((id) => hashPartitionRemainder(id, modulus));
      const wrong = ids.filter((_, i) => got[i] !== want[i]).map((id) => JSON.stringify(id));
      expect(wrong, `modulus ${modulus}`).toEqual([]);
    }
  });
});
