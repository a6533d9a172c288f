/**
 * Migration 4 (overrides apart): an installation made before it kept an override as the unit's
 * stored row (source OVERRIDE), with no record of what it replaced. The migration moves those rows
 * into the overrides table, leaves the unit without a stored assignment, and touches no other row
 * (README "Upgrading: overrides kept apart").
 */
import { runner } from "node-pg-migrate";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, runMigrations } from "../../src/store/migrations.js";
import { freshDatabase } from "../support/services.js";

let db: Awaited<ReturnType<typeof freshDatabase>>;
let client: pg.Client;
beforeAll(async () => {
  db = await freshDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterAll(async () => {
  await client?.end();
  await db?.drop();
});

describe("migration 4_overrides-apart", () => {
  it("moves override rows into overrides; hashed and imported rows stay; counts agree", async () => {
    // The schema as it was before: migrations 1 to 3 only.
    await runner({
      dbClient: client as never,
      dir: MIGRATIONS_DIR,
      direction: "up",
      migrationsTable: "schema_migrations",
      count: 3,
      log: () => {},
    });
    await client.query(`INSERT INTO salts VALUES ('m', 'experiment:m')`);
    const variants = JSON.stringify([
      { id: 0, key: "a", weight: 5000 },
      { id: 1, key: "b", weight: 5000 },
    ]);
    const {
      rows: [{ id }],
    } = await client.query<{ id: number }>(
      `INSERT INTO experiments (key, salt, unit_type, hash_version, variants, rollout, status, override_count, version)
       VALUES ('m', 'm', 'user_id', 1, $1, 10000, 2, 2, 7) RETURNING id`,
      [variants],
    );
    await client.query(
      `INSERT INTO assignments (experiment_id, unit_id, variant, version, source) VALUES
         ($1, 'hashed', 0, 1, 1), ($1, 'imported', 1, 2, 2), ($1, 'forced-a', 0, 5, 3), ($1, 'forced-b', 1, 6, 3)`,
      [id],
    );

    await runMigrations(client);

    const { rows: stored } = await client.query(`SELECT unit_id, variant, version::int, source FROM assignments ORDER BY unit_id`);
    expect(stored).toEqual([
      { unit_id: "hashed", variant: 0, version: 1, source: 1 },
      { unit_id: "imported", variant: 1, version: 2, source: 2 },
    ]);
    const { rows: overrides } = await client.query(`SELECT experiment_id, unit_id, variant, version::int FROM overrides ORDER BY unit_id`);
    expect(overrides).toEqual([
      { experiment_id: id, unit_id: "forced-a", variant: 0, version: 5 },
      { experiment_id: id, unit_id: "forced-b", variant: 1, version: 6 },
    ]);
    const { rows: exp } = await client.query(`SELECT override_count, version::int FROM experiments`);
    expect(exp).toEqual([{ override_count: 2, version: 7 }]);
    const { rows: names } = await client.query<{ name: string }>(`SELECT name FROM schema_migrations ORDER BY id`);
    expect(names.map((r) => r.name)).toContain("4_overrides-apart");
  });
});
