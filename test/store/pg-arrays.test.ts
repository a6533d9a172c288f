/**
 * The array literals of src/store/pg-arrays.ts, checked by PostgreSQL itself: whatever goes in
 * as a parameter must come back element for element.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { numberArray, textArray } from "../../src/store/pg-arrays.js";
import { serverDatabaseUrl } from "../support/services.js";

let client: pg.Client;
beforeAll(async () => {
  client = new pg.Client({ connectionString: serverDatabaseUrl() });
  await client.connect();
});
afterAll(async () => client?.end());

const roundTrip = async (values: string[]) =>
  (await client.query<{ a: string[] }>(`SELECT $1::text[] AS a`, [textArray(values)])).rows[0].a;

describe("textArray", () => {
  it("round-trips text that array syntax gives meaning to: quotes, backslashes, commas, braces, spaces, NULL, empty", async () => {
    const tricky = [
      'a"b',
      "a\\b",
      "\\",
      '"',
      "a,b",
      "{x}",
      " lead",
      "trail ",
      "NULL",
      "null",
      "",
      "tab\there",
      "line\nbreak",
      "é🙂",
      '\\"',
      "}{",
      ",",
    ];
    expect(await roundTrip(tricky)).toEqual(tricky);
    expect(await roundTrip(["plain", "u-1", "u-2"])).toEqual(["plain", "u-1", "u-2"]);
    expect(await roundTrip([])).toEqual([]);
  });

  it("round-trips any strings without U+0000 (which PostgreSQL text cannot hold)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({ unit: "binary", maxLength: 12 }).filter((s) => !s.includes("\u0000")),
          { maxLength: 30 },
        ),
        async (values) => {
          expect(await roundTrip(values)).toEqual(values);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("numberArray", () => {
  it("round-trips ints, smallints and bigints beyond 2^53", async () => {
    const { rows } = await client.query<{ i: number[]; s: number[]; b: string[] }>(
      `SELECT $1::int[] AS i, $2::smallint[] AS s, $3::bigint[]::text[] AS b`,
      [numberArray([0, -1, 2147483647]), numberArray([1, 2, 32767]), numberArray([9007199254740993n, "18", 1n])],
    );
    expect(rows[0]).toEqual({ i: [0, -1, 2147483647], s: [1, 2, 32767], b: ["9007199254740993", "18", "1"] });
  });
});
