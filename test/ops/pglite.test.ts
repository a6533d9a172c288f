/**
 * The server on the embedded PostgreSQL (PGlite): the same SQL, migrations through
 * node-pg-migrate, LISTEN/NOTIFY, serialized transactions, imports without COPY (the unnest
 * fallback), stickiness across a restart on the same folder, and the folder lock.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  columnAnswers,
  createClient,
  ExperimentService,
  ExperimentStatus,
  ImportPolicy,
  Reason,
  Source,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { PgliteDatabase } from "../../src/store/pglite-database.js";
import { expectFailure, specVariant, status } from "../grpc/helpers.js";

describe("server on PGlite", () => {
  let dir: string;
  let server: RunningServer;
  let admin: ReturnType<typeof createClient<typeof ExperimentService>>;
  let assign: ReturnType<typeof createClient<typeof AssignmentService>>;
  const start = async () => {
    server = await startServer({ pgliteDataDir: path.join(dir, "db"), port: 0, logger: createLogger("silent") });
    admin = createClient(ExperimentService, server.address, { timeoutMs: 30_000 });
    assign = createClient(AssignmentService, server.address, { timeoutMs: 30_000 });
  };
  const stop = async () => {
    admin?.close();
    assign?.close();
    await server?.close();
  };
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "pglite-server-"));
    await start();
  });
  afterAll(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the migrations into schema_migrations and serves with the in-process cache", async () => {
    expect([server.databaseKind, server.cacheKind]).toEqual(["pglite", "memory"]);
    const { rows } = await server.database.query<{ name: string }>(`SELECT name FROM schema_migrations ORDER BY id`);
    expect(rows.map((r) => r.name)).toEqual([
      "1_initial",
      "2_namespace-hash-version",
      "3_audit-log",
      "4_overrides-apart",
      "5_archive",
      "6_cohorts-and-jobs",
      "7_partitioned-assignments",
      "8_assignment-events",
      "9_targeting",
      "10_job-migrate-import",
      "11_cohort-attributes",
      "12_namespace-params-holdouts",
      "13_event-sinks",
      "14_config-versions",
      "15_assignments-unit-ids-by-bytes",
      "16_event-outbox-queue",
      "17_partition-event-triggers",
    ]);
    // The embedded database partitions stored assignments as PostgreSQL does (16 by default).
    const { rows: partitions } = await server.database.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'assignments'::regclass`,
    );
    expect(partitions).toEqual([{ n: 16 }]);
  });

  it("assigns by the SPEC hash, stores, and answers sticky; concurrent admin transactions do not interfere", async () => {
    const variants = [
      { key: "a", weight: 3000 },
      { key: "b", weight: 7000 },
    ];
    // Transactions are serialized on the one connection: many at once all succeed.
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        admin.createExperiment({ key: `exp-${i}`, salt: `salt-${i}`, variants, status: ExperimentStatus.RUNNING }),
      ),
    );
    expect((await admin.listExperiments({})).experiments).toHaveLength(8);
    const ids = Array.from({ length: 3_000 }, (_, i) => `unit-${i}`);
    const [first, again] = await Promise.all([
      assign.bulkAssign({ experimentKey: "exp-3", unitIds: ids }),
      assign.bulkAssign({ experimentKey: "exp-3", unitIds: ids }),
    ]);
    const a1 = columnAnswers(first.column!);
    const a2 = columnAnswers(again.column!);
    ids.forEach((id, i) => {
      expect(a1[i].variantKey).toBe(specVariant(id, "salt-3", variants));
      expect(a2[i].variantKey).toBe(a1[i].variantKey);
    });
    // Each unit was stored once: exactly one of the two racing calls answered NEW.
    const newCount = [...a1, ...a2].filter((x) => x.reason === Reason.NEW).length;
    expect(newCount).toBe(ids.length);
    const stats = await admin.getExperimentStats({ key: "exp-3" });
    expect(stats.totalUnits).toBe(3_000n);
  });

  it("imports without COPY (staged with unnest), all or nothing, and exports the rows back", async () => {
    await admin.createExperiment({
      key: "imported",
      variants: [
        { key: "x", weight: 5000 },
        { key: "y", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const rows = Array.from({ length: 23_456 }, (_, i) => ({
      experimentKey: "imported",
      unitId: `legacy\t${i}\\`,
      variantKey: i % 2 ? "x" : "y",
    }));
    async function* messages(list: typeof rows, policy = ImportPolicy.SKIP_EXISTING) {
      for (let i = 0; i < list.length; i += 5_000) yield { setup: i === 0 ? { policy } : undefined, rows: list.slice(i, i + 5_000) };
    }
    // A bad row in the last message refuses the whole import: nothing is stored.
    await expectFailure(
      admin.importAssignments(messages([...rows, { experimentKey: "imported", unitId: "z", variantKey: "nope" }])),
      status.INVALID_ARGUMENT,
      "nothing was stored",
    );
    expect((await admin.getExperimentStats({ key: "imported" })).variants.every((v) => v.imported === 0n)).toBe(true);

    const r = await admin.importAssignments(messages(rows));
    expect([r.received, r.imported, r.skipped]).toEqual([23_456n, 23_456n, 0n]);
    const again = await admin.importAssignments(messages(rows.slice(0, 100)));
    expect([again.imported, again.skipped]).toEqual([0n, 100n]);

    const exported = new Map<string, string>();
    for await (const page of admin.exportAssignments({ experimentKey: "imported", batchSize: 10_000 })) {
      page.unitIds.forEach((u, i) => {
        expect(page.sources[i]).toBe(Source.IMPORT);
        exported.set(u, page.legend[page.variantIndexes[i]]);
      });
    }
    expect(exported).toEqual(new Map(rows.map((row) => [row.unitId, row.variantKey])));

    // OVERWRITE replaces stored values, and no cache answers the old one.
    const flipped = rows.slice(0, 10).map((row) => ({ ...row, variantKey: row.variantKey === "x" ? "y" : "x" }));
    const before = await assign.bulkAssign({ experimentKey: "imported", unitIds: flipped.map((f) => f.unitId) });
    expect(columnAnswers(before.column!).map((a) => a.variantKey)).toEqual(rows.slice(0, 10).map((row) => row.variantKey));
    const ow = await admin.importAssignments(messages(flipped, ImportPolicy.OVERWRITE));
    expect(ow.imported).toBe(10n);
    const after = await assign.bulkAssign({ experimentKey: "imported", unitIds: flipped.map((f) => f.unitId) });
    expect(columnAnswers(after.column!).map((a) => a.variantKey)).toEqual(flipped.map((f) => f.variantKey));
  });

  it("keeps everything across a restart on the same folder, and refuses a second opener", async () => {
    const ids = ["keep-1", "keep-2", "keep-3"];
    const before = columnAnswers((await assign.bulkAssign({ experimentKey: "exp-0", unitIds: ids })).column!);
    await expect(PgliteDatabase.open({ dataDir: path.join(dir, "db") })).rejects.toThrow(/already open in this process|in use by process/);
    await stop();
    await start();
    const after = columnAnswers((await assign.bulkAssign({ experimentKey: "exp-0", unitIds: ids, options: { explain: true } })).column!);
    expect(after.map((a) => a.variantKey)).toEqual(before.map((a) => a.variantKey));
    expect(after.every((a) => a.reason === Reason.STICKY)).toBe(true);
    expect((await admin.listExperiments({})).experiments.map((e) => e.key)).toContain("imported");
  });
});
