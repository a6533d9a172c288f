/**
 * Write coalescing (src/store/assignment-store.ts: "Concurrent inserts from many calls are
 * coalesced into shared statements"): 200 concurrent Assign calls for 200 new units, from a few
 * clients, are stored by far fewer than 200 INSERT statements.
 *
 * How the statements are counted, and why not otherwise:
 * - pg_stat_statements would count them exactly, but it must be in shared_preload_libraries,
 *   which neither the test server (global-setup.ts) nor a typical local server has.
 * - pg_stat_database.xact_commit (one transaction per autocommitted INSERT) is NOT sound here:
 *   since PostgreSQL 15 a backend publishes its counters lazily (at most once a second, and an idle
 *   backend only after up to 10 s), so a delta read right after the calls can miss most of the
 *   transactions and pass for the wrong reason; it also counts every other transaction of the
 *   database (the server's configuration checks, reads, this test's own queries), and it could not
 *   tell one INSERT of 200 rows from 200 INSERTs inside one transaction. At best an upper bound, and
 *   only after waiting for the counters to settle.
 * - pg_stat_user_tables.n_tup_ins counts rows, not statements.
 * So the test installs a statement-level AFTER INSERT trigger on assignments: it fires exactly once
 * per INSERT statement (even one that inserts nothing because of ON CONFLICT), inside the
 * statement's own transaction, and records how many rows that statement inserted (its transition
 * table). That count is exact, synchronous, and independent of the server's code; the rows it saw
 * must add up to the 200 new rows, which shows that no statement escaped it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { separateClients, specVariant, sql, units, type WeightedVariant } from "../grpc/helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const variants: WeightedVariant[] = [
  { key: "x", weight: 5000 },
  { key: "y", weight: 5000 },
];

describe("write coalescing", () => {
  it("200 concurrent Assign calls for 200 new units from 4 clients share far fewer than 200 INSERT statements", async () => {
    await t.experiments.createExperiment({ key: "coalesce", variants, status: ExperimentStatus.RUNNING });
    await sql(
      t.databaseUrl,
      `CREATE TABLE test_insert_statements (id bigserial PRIMARY KEY, inserted int NOT NULL);
       CREATE FUNCTION test_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         INSERT INTO test_insert_statements (inserted) SELECT count(*) FROM new_rows;
         RETURN NULL;
       END $$;
       CREATE TRIGGER test_count_insert AFTER INSERT ON assignments
         REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION test_count_insert();`,
    );
    // The trigger counts: one warm-up call (also warming the server's pools) is one statement of one row.
    await t.assignments.assign({ experimentKey: "coalesce", unitId: "warm-up" });
    const statements = () =>
      sql<{ statements: number; inserted: number }>(
        t.databaseUrl,
        `SELECT count(*)::int AS statements, coalesce(sum(inserted), 0)::int AS inserted FROM test_insert_statements`,
      ).then((r) => r[0]);
    expect(await statements()).toEqual({ statements: 1, inserted: 1 });

    const clients = Array.from({ length: 4 }, () => separateClients(t.server.address));
    try {
      // Connect every client first, so that the 200 calls are in flight together.
      await Promise.all(clients.map((c, k) => c.assignments.assign({ experimentKey: "coalesce", unitId: `connect-${k}` })));
      const before = await statements();
      const ids = units("co-", 200);
      const answers = await Promise.all(
        ids.map((u, i) => clients[i % clients.length].assignments.assign({ experimentKey: "coalesce", unitId: u })),
      );
      const after = await statements();

      // Each call answered as if alone: its own unit, NEW, stored.
      expect(
        answers.filter((r, i) => {
          const a = r.assignment!;
          return a.variantKey !== specVariant(ids[i], "coalesce", variants) || a.reason !== Reason.NEW || !a.stored || !a.enrolled;
        }),
      ).toEqual([]);
      const [{ n }] = await sql<{ n: number }>(t.databaseUrl, `SELECT count(*)::int AS n FROM assignments WHERE unit_id LIKE 'co-%'`);
      expect(n).toBe(200);

      const used = after.statements - before.statements;
      console.info(
        `write coalescing: 200 concurrent Assign calls -> ${used} INSERT statements (${(200 / used).toFixed(1)} rows each on average)`,
      );
      // Every new row went through a counted statement…
      expect(after.inserted - before.inserted).toBe(200);
      // …and they were shared.
      expect(used).toBeGreaterThanOrEqual(1);
      expect(used).toBeLessThan(100);
    } finally {
      for (const c of clients) {
        c.assignments.close();
        c.experiments.close();
      }
    }
  });
});
