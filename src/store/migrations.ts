import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runner } from "node-pg-migrate";

/** migrations/ at the package root: two levels up from src/store, three from dist/src/store. */
export const MIGRATIONS_DIR =
  [new URL("../../migrations", import.meta.url), new URL("../../../migrations", import.meta.url)]
    .map((u) => fileURLToPath(u))
    .find((dir) => existsSync(dir)) ?? fileURLToPath(new URL("../../migrations", import.meta.url));

/** The part of a node-postgres client that node-pg-migrate's runner uses. */
export interface MigrationClient {
  query(textOrConfig: string | { text: string; values?: unknown[] }, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** Partitions of the assignments table made at install (ASSIGNMENT_PARTITIONS). */
export const DEFAULT_ASSIGNMENT_PARTITIONS = 16;

export interface MigrateOptions {
  /** Hash partitions of assignments, by unit id, when a migration makes the table (install, or
   * the upgrade to the partitioned table); ignored once it exists. Default 16. */
  assignmentPartitions?: number;
}

/**
 * Applies the migrations of MIGRATIONS_DIR not applied yet, all in one transaction, recording them
 * in schema_migrations. Several servers may start at once: the others wait for the first one's
 * migrations (node-pg-migrate's default, "fail", made them exit with "Another migration is
 * already running").
 */
export async function runMigrations(dbClient: MigrationClient, options: MigrateOptions = {}): Promise<void> {
  // Read by migration 7 (partitioned assignments) when it runs; a session setting, so set before
  // the runner's transaction begins.
  await dbClient.query(`SELECT set_config('assignment.partitions', $1, false)`, [
    String(options.assignmentPartitions ?? DEFAULT_ASSIGNMENT_PARTITIONS),
  ]);
  await runner({
    dbClient: dbClient as never,
    dir: MIGRATIONS_DIR,
    direction: "up",
    migrationsTable: "schema_migrations",
    count: Infinity,
    log: () => {},
    singleTransaction: true,
    advisoryLockMode: "wait",
  });
}
