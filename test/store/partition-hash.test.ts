/**
 * partition-hash.ts against PostgreSQL itself: for thousands of random unit ids (empty, ASCII,
 * accented, CJK, emoji, lone surrogates, every length around lookup3's 12-byte blocks), the hash
 * equals hashtextextended(id, HASH_PARTITION_SEED) in the C collation, and the partition computed
 * from it is the one the database put the row in, for moduli 16, 7 and a table mixing moduli.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashRemainder, partitionKeyHash } from "../../src/store/partition-hash.js";
import { freshDatabase } from "../support/services.js";

const SEED = "8816678312871386365"; // HASH_PARTITION_SEED, 0x7A5B22367996DCFD

let fresh: Awaited<ReturnType<typeof freshDatabase>>;
let client: pg.Client;
beforeAll(async () => {
  fresh = await freshDatabase();
  client = new pg.Client({ connectionString: fresh.url });
  await client.connect();
});
afterAll(async () => {
  await client?.end();
  await fresh?.drop();
});

/** A deterministic pseudo-random sequence (the test must fail the same way twice). */
function randoms(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 48271) % 2147483647;
    return s / 2147483647;
  };
}

const ALPHABETS = [
  "abcdefghijklmnopqrstuvwxyz0123456789-_:.@",
  "àéîõüßçñøÅÆŒ",
  "日本語中文한국어テキスト",
  "😀🚀👍🏽🇫🇷𝄞",
  "\ud800\udfff", // halves of surrogate pairs: alone, each is sent as U+FFFD
  " \t\n'\"\\{},",
];

function randomIds(n: number): string[] {
  const r = randoms(20261202);
  const ids = ["", " ", "a", "unit-42", "\ud800", "\udc00x"];
  for (let len = 0; len <= 40; len++) ids.push("x".repeat(len), "é".repeat(len));
  while (ids.length < n) {
    const alphabet = [...ALPHABETS[Math.floor(r() * ALPHABETS.length)]!];
    const len = Math.floor(r() * 30);
    let id = "";
    for (let k = 0; k < len; k++) id += alphabet[Math.floor(r() * alphabet.length)]!;
    ids.push(r() < 0.5 ? id : `user-${Math.floor(r() * 1e9)}${id}`);
  }
  return ids;
}

describe("partition hash of a text key", () => {
  const ids = randomIds(4000);

  it("is hashtextextended(id, HASH_PARTITION_SEED) in the C collation", async () => {
    const { rows } = await client.query<{ h: string }>(
      `SELECT hashtextextended(u COLLATE "C", ${SEED})::text AS h FROM unnest($1::text[]) WITH ORDINALITY AS t(u, i) ORDER BY i`,
      [ids],
    );
    const ours = ids.map((id) => BigInt.asIntN(64, partitionKeyHash(id)).toString());
    expect(ours).toEqual(rows.map((r) => r.h));
  });

  for (const layout of [
    { name: "16 partitions", parts: Array.from({ length: 16 }, (_, r) => [16, r] as const) },
    { name: "7 partitions", parts: Array.from({ length: 7 }, (_, r) => [7, r] as const) },
    {
      name: "moduli 2, 4 and 8 mixed",
      parts: [
        [2, 0],
        [4, 1],
        [8, 3],
        [8, 7],
      ] as const,
    },
  ]) {
    it(`chooses the partition the database stores the row in (${layout.name})`, async () => {
      const table = `h_${layout.parts.length}_${layout.parts[0]![0]}`;
      await client.query(`CREATE TABLE ${table} (u text COLLATE "C" NOT NULL) PARTITION BY HASH (u)`);
      for (const [m, r] of layout.parts)
        await client.query(`CREATE TABLE ${table}_m${m}_r${r} PARTITION OF ${table} FOR VALUES WITH (MODULUS ${m}, REMAINDER ${r})`);
      await client.query(`INSERT INTO ${table} SELECT unnest($1::text[])`, [ids]);
      // Stored as the database received them: a lone surrogate arrives as U+FFFD.
      const stored = new Map(
        (await client.query<{ u: string; p: string }>(`SELECT u, tableoid::regclass::text AS p FROM ${table}`)).rows.map((r) => [r.u, r.p]),
      );
      let compared = 0;
      for (const id of ids) {
        const key = new TextDecoder().decode(new TextEncoder().encode(id));
        const [m, r] = layout.parts.find(([m, r]) => hashRemainder(id, m) === r)!;
        expect(stored.get(key), JSON.stringify(id)).toBe(`${table}_m${m}_r${r}`);
        compared++;
      }
      expect(compared).toBe(ids.length);
      // Every partition received rows: the ids reach all of them.
      expect(new Set(stored.values()).size).toBe(layout.parts.length);
    });
  }
});
