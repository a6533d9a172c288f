/**
 * SQLSTATE classification (src/store/pg-errors.ts), and both drivers passing their failures
 * through it: what leaves a driver is a ServiceError with the domain's Code, or the database's own
 * error when nobody expects it (a unique violation, which stores handle themselves).
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ServiceError } from "../../src/errors.js";
import type { Database } from "../../src/store/database.js";
import { isConnectionError, isDataException, isUniqueViolation, sqlState, toStoreError } from "../../src/store/pg-errors.js";
import { PgDatabase } from "../../src/store/pg-database.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { freshDatabase } from "../support/services.js";

const pgError = (code: string, message = "m") => Object.assign(new Error(message), { code });

describe("classification", () => {
  it.each([
    ["22P02 invalid text", pgError("22P02"), { state: "22P02", data: true, unique: false, connection: false }],
    ["22021 bad byte sequence", pgError("22021"), { state: "22021", data: true, unique: false, connection: false }],
    ["23505 unique violation", pgError("23505"), { state: "23505", data: false, unique: true, connection: false }],
    ["08006 connection failure", pgError("08006"), { state: "08006", data: false, unique: false, connection: true }],
    ["57P01 admin shutdown", pgError("57P01"), { state: "57P01", data: false, unique: false, connection: true }],
    ["53300 too many connections", pgError("53300"), { state: "53300", data: false, unique: false, connection: true }],
    ["ECONNREFUSED (not a SQLSTATE)", pgError("ECONNREFUSED"), { state: undefined, data: false, unique: false, connection: true }],
    [
      "55000 not accepting connections",
      pgError("55000", 'database "x" is not currently accepting connections'),
      { state: "55000", data: false, unique: false, connection: true },
    ],
    [
      "55000 another state error",
      pgError("55000", "object not in prerequisite state"),
      { state: "55000", data: false, unique: false, connection: false },
    ],
    ["a closed PGlite", new Error("PGlite is closed"), { state: undefined, data: false, unique: false, connection: true }],
    ["42P01 undefined table", pgError("42P01"), { state: "42P01", data: false, unique: false, connection: false }],
    ["not an error", "boom", { state: undefined, data: false, unique: false, connection: false }],
  ])("%s", (_name, err, expected) => {
    expect({
      state: sqlState(err),
      data: isDataException(err),
      unique: isUniqueViolation(err),
      connection: isConnectionError(err),
    }).toEqual(expected);
  });

  it("toStoreError: UNAVAILABLE, INVALID_ARGUMENT, or the error unchanged", () => {
    const unreachable = toStoreError(pgError("57P01", "terminating connection due to administrator command"));
    expect(unreachable).toBeInstanceOf(ServiceError);
    expect([(unreachable as ServiceError).code, (unreachable as ServiceError).message]).toEqual([
      Code.Unavailable,
      "database unavailable: terminating connection due to administrator command",
    ]);
    const data = toStoreError(pgError("22P02", 'invalid input syntax for type integer: "x"')) as ServiceError;
    expect([data.code, data.message]).toEqual([Code.InvalidArgument, 'invalid input: invalid input syntax for type integer: "x"']);
    const unique = pgError("23505");
    expect(toStoreError(unique)).toBe(unique);
    const own = new ServiceError(Code.NotFound, "no such thing");
    expect(toStoreError(own)).toBe(own);
  });
});

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a failure");
}

const drivers: Array<[string, () => Promise<{ db: Database; done(): Promise<void> }>]> = [
  [
    "PostgreSQL",
    async () => {
      const fresh = await freshDatabase();
      const db = new PgDatabase({ url: fresh.url, max: 2 });
      return {
        db,
        done: async () => {
          await db.close();
          await fresh.drop();
        },
      };
    },
  ],
  [
    "PGlite",
    async () => {
      const db = await PgliteDatabase.open({ dataDir: "memory://" });
      return { db, done: () => db.close() };
    },
  ],
];

describe.each(drivers)("the %s driver maps its errors", (_name, open) => {
  let db: Database;
  let done: () => Promise<void>;
  beforeAll(async () => {
    ({ db, done } = await open());
    await db.query(`CREATE TABLE t (k int PRIMARY KEY)`);
    await db.query(`INSERT INTO t VALUES (1)`);
  });
  afterAll(async () => done?.());

  const expectInvalidInput = (err: unknown) => {
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe(Code.InvalidArgument);
    expect((err as ServiceError).message).toMatch(/^invalid input: invalid input syntax for type integer/);
  };

  it("a data exception is INVALID_ARGUMENT: from query, transaction and session", async () => {
    expectInvalidInput(await failure(db.query(`SELECT 'x'::int`)));
    expectInvalidInput(await failure(db.transaction((tx) => tx.query(`SELECT 'x'::int`))));
    const session = await db.session();
    try {
      expectInvalidInput(await failure(session.query(`SELECT $1::int`, ["x"])));
      expectInvalidInput(await failure(session.transaction((tx) => tx.query(`SELECT 'x'::int`))));
    } finally {
      session.release();
    }
    // Nothing was left broken.
    expect((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM t`)).rows).toEqual([{ n: 1 }]);
  });

  it("a unique violation stays the database's error, for the store to name the key", async () => {
    const err = await failure(db.transaction((tx) => tx.query(`INSERT INTO t VALUES (1)`)));
    expect(err).not.toBeInstanceOf(ServiceError);
    expect(isUniqueViolation(err)).toBe(true);
  });
});

describe("an unreachable database is UNAVAILABLE", () => {
  it("PostgreSQL: nothing listening", async () => {
    const db = new PgDatabase({ url: `postgres://postgres@127.0.0.1:${await closedPort()}/postgres`, max: 1 });
    try {
      for (const p of [db.query(`SELECT 1`), db.transaction((tx) => tx.query(`SELECT 1`)), db.session()]) {
        const err = await failure(p);
        expect(err).toBeInstanceOf(ServiceError);
        expect((err as ServiceError).code).toBe(Code.Unavailable);
      }
    } finally {
      await db.close();
    }
  });

  it("PGlite: closed", async () => {
    const db = await PgliteDatabase.open({ dataDir: "memory://" });
    await db.close();
    for (const p of [db.query(`SELECT 1`), db.transaction((tx) => tx.query(`SELECT 1`))]) {
      const err = await failure(p);
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as ServiceError).code).toBe(Code.Unavailable);
    }
  });
});
