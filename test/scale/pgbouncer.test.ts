/**
 * The server behind PgBouncer in transaction pooling mode (README "Connection poolers"): every
 * transaction, and every statement outside one, gets whichever of PgBouncer's few server
 * connections is free, so anything kept in a session between statements (SET, LISTEN,
 * session-level advisory locks, named prepared statements) would be lost or land on another
 * client's connection.
 *
 * A DEDICATED PgBouncer (harness/pgbouncer.ts, Debian's, pool_mode = transaction, 3 server
 * connections for everyone) sits in front of the test PostgreSQL server. Two servers (A and B) run
 * in this process on one fresh database, DATABASE_URL through PgBouncer, DATABASE_DIRECT_URL (LISTEN,
 * migrations) straight to PostgreSQL; B checks the configuration epoch only every 60 s, so what
 * reaches it within the polls below came by LISTEN/NOTIFY. Through them: assign, bulk, stream,
 * import, overrides, a weight change, pg-boss starting and running; every answer is checked
 * against the SPEC formula or the stored row, and PgBouncer's own statistics show the traffic
 * went through it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CohortService,
  ExperimentStatus,
  ImportPolicy,
  JobKind,
  JobService,
  JobState,
  Reason,
  columnAnswers,
  createClient,
  type Job,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import type { PgBouncer } from "../../harness/pgbouncer.js";
import { databaseNameOf, eventually, specVariant, sql, storedAssignments, units } from "../grpc/helpers.js";
import { Dedicated } from "../support/dedicated.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl, serverDatabaseUrl } from "../support/services.js";
import { rawClients } from "../reliability/support/load.js";

const d = new Dedicated();
let bouncer: PgBouncer;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let prefix: string;
let a: RunningServer;
let b: RunningServer;
let ca: ReturnType<typeof rawClients>;
let cb: ReturnType<typeof rawClients>;
let pooledUrl: string;

const W1 = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const W2 = [
  { key: "a", weight: 0 },
  { key: "b", weight: 10_000 },
];

/** Transactions PgBouncer has run for the test database so far. */
async function pooledTransactions(): Promise<number> {
  const rows = await bouncer.show<{ database: string; total_xact_count: string }>("STATS");
  return Number(rows.find((r) => r.database === db.name)?.total_xact_count ?? 0);
}

beforeAll(async () => {
  const direct = new URL(serverDatabaseUrl());
  bouncer = await d.pgbouncer({
    server: { host: direct.hostname, port: Number(direct.port || 5432) },
    poolMode: "transaction",
    poolSize: 3,
  });
  db = await freshDatabase();
  d.own("database", () => db.drop());
  prefix = freshRedisPrefix();
  d.own("redis prefix", () => flushPrefix(redisUrl(), prefix));
  pooledUrl = bouncer.url(databaseNameOf(db.url));
  const start = (configCheckMs: number) =>
    startServer({
      databaseUrl: pooledUrl,
      databaseDirectUrl: db.url,
      redisUrl: redisUrl(),
      redisPrefix: prefix,
      port: 0,
      databasePoolSize: 8,
      transferPoolSize: 2,
      configCheckMs,
      jobs: { chunkUnits: 1_000, workers: 2 },
      logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
    });
  a = await start(500);
  d.own("server A", () => a.close());
  b = await start(60_000);
  d.own("server B", () => b.close());
  ca = rawClients(a.address);
  cb = rawClients(b.address);
});
afterAll(async () => {
  ca?.close();
  cb?.close();
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

describe("behind PgBouncer in transaction pooling mode", () => {
  it("assigns, bulk-assigns, streams and imports correctly; configuration changes and overrides reach the other server by LISTEN", async () => {
    const before = await pooledTransactions();
    await ca.experiments.createExperiment({ key: "pooled", variants: W1, status: ExperimentStatus.RUNNING });
    // B learns of it by NOTIFY alone (its periodic check is 60 s away).
    expect(await eventually(async () => b.registry.get("pooled") !== undefined, 10_000)).toBe(true);

    // Assign on A (NEW), then on B (STICKY, the same variant).
    const single = units("one-", 50);
    for (const u of single) {
      const r = (await ca.assignments.assign({ experimentKey: "pooled", unitId: u })).assignment!;
      expect([r.variantKey, r.reason], u).toEqual([specVariant(u, "pooled", W1), Reason.NEW]);
    }
    for (const u of single) {
      const r = (await cb.assignments.assign({ experimentKey: "pooled", unitId: u })).assignment!;
      expect([r.variantKey, r.reason], u).toEqual([specVariant(u, "pooled", W1), Reason.STICKY]);
    }

    // Bulk: 2,000 new units through B, several calls at once, then all of them again through A.
    const bulk = units("bulk-", 2_000);
    const chunks = Array.from({ length: 8 }, (_, k) => bulk.slice(k * 250, (k + 1) * 250));
    const first = await Promise.all(chunks.map((ids) => cb.assignments.bulkAssign({ experimentKey: "pooled", unitIds: ids })));
    first.forEach((r, k) =>
      columnAnswers(r.column!).forEach((x, i) => {
        const u = chunks[k]![i]!;
        expect([x.variantKey, x.reason], u).toEqual([specVariant(u, "pooled", W1), Reason.NEW]);
      }),
    );
    const again = columnAnswers((await ca.assignments.bulkAssign({ experimentKey: "pooled", unitIds: bulk })).column!);
    bulk.forEach((u, i) => expect([again[i]!.variantKey, again[i]!.reason], u).toEqual([specVariant(u, "pooled", W1), Reason.STICKY]));

    // A stream of 6,000 units (half of them stored already) through A.
    const streamed = [...bulk.slice(0, 3_000), ...units("stream-", 3_000)];
    const answers: { variantKey: string; reason: Reason }[] = [];
    for await (const r of ca.assignments.streamAssign(
      (async function* () {
        yield { setup: { experimentKeys: ["pooled"] } };
        for (let k = 0; k < streamed.length; k += 1_000) yield { unitIds: streamed.slice(k, k + 1_000) };
      })(),
    )) {
      answers.push(...columnAnswers(r.columns[0]!));
    }
    expect(answers).toHaveLength(streamed.length);
    streamed.forEach((u, i) =>
      expect([answers[i]!.variantKey, answers[i]!.reason], u).toEqual([
        specVariant(u, "pooled", W1),
        u.startsWith("bulk-") ? Reason.STICKY : Reason.NEW,
      ]),
    );

    // Import (one transaction across the upload, with a temporary staging table): 3,000 units
    // stored as "b" whatever their hash says, 500 of them stored already (kept: SKIP_EXISTING).
    const imported = [...bulk.slice(0, 500), ...units("imp-", 2_500)];
    const result = await ca.experiments.importAssignments(
      (async function* () {
        for (let k = 0; k < imported.length; k += 1_000) {
          yield {
            ...(k === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING } } : {}),
            rows: imported.slice(k, k + 1_000).map((unitId) => ({ experimentKey: "pooled", unitId, variantKey: "b" })),
          };
        }
      })(),
    );
    expect([Number(result.received), Number(result.imported), Number(result.skipped)]).toEqual([3_000, 2_500, 500]);
    const afterImport = columnAnswers((await cb.assignments.bulkAssign({ experimentKey: "pooled", unitIds: imported })).column!);
    imported.forEach((u, i) =>
      expect([afterImport[i]!.variantKey, afterImport[i]!.reason], u).toEqual([
        u.startsWith("bulk-") ? specVariant(u, "pooled", W1) : "b",
        Reason.STICKY,
      ]),
    );

    // Overrides set through A are answered by B within 1 s of returning (SPEC.md "Stored
    // assignments"); B had the units cached from the calls above.
    const overridden = single.slice(0, 10);
    const target = (u: string) => (specVariant(u, "pooled", W1) === "a" ? "b" : "a");
    await ca.experiments.setOverrides({
      experimentKey: "pooled",
      overrides: overridden.map((unitId) => ({ unitId, variantKey: target(unitId) })),
    });
    expect(
      await eventually(async () => {
        const r = columnAnswers((await cb.assignments.bulkAssign({ experimentKey: "pooled", unitIds: overridden })).column!);
        return overridden.every((u, i) => r[i]!.reason === Reason.OVERRIDE && r[i]!.variantKey === target(u));
      }, 10_000),
    ).toBe(true);

    // A weight change through A: B hashes new units with the new weights.
    const v = (await ca.experiments.getExperiment({ key: "pooled" })).experiment!.version;
    const updated = (await ca.experiments.updateExperiment({ key: "pooled", version: v, variants: { variants: W2 } })).experiment!;
    // B answers from the new version (a probe answered "b" alone proves nothing: W1 gives "b" to
    // half the units, so a probe could pass on the old weights and the units below fail).
    expect(
      await eventually(async () => {
        const r = (await cb.assignments.assign({ experimentKey: "pooled", unitId: `probe-${Date.now()}` })).assignment!;
        return r.experimentVersion === updated.version && r.variantKey === "b" && r.reason === Reason.NEW;
      }, 10_000),
    ).toBe(true);
    const late = units("late-", 200);
    const lateAnswers = columnAnswers((await cb.assignments.bulkAssign({ experimentKey: "pooled", unitIds: late })).column!);
    lateAnswers.forEach((x, i) => expect([x.variantKey, x.reason], late[i]).toEqual(["b", Reason.NEW]));

    // What was answered is what is stored.
    const stored = await storedAssignments(db.url, "pooled");
    for (const u of [...single, ...bulk, ...streamed]) expect(stored.get(u)?.variant, u).toBe(specVariant(u, "pooled", W1));
    for (const u of imported.slice(500)) expect(stored.get(u)?.variant, u).toBe("b");

    // A job (pg-boss's own pool through PgBouncer too; each chunk under an advisory lock held by
    // an open transaction): 6,000 units in chunks of 1,000, run by both servers' workers.
    const cohorts = createClient(CohortService, a.address, { timeoutMs: 60_000 });
    const jobs = createClient(JobService, b.address, { timeoutMs: 60_000 });
    try {
      const members = units("job-", 6_000);
      const up = await cohorts.uploadCohort(
        (async function* () {
          yield { setup: { name: "pooled-cohort" }, unitIds: members.slice(0, 3_000) };
          yield { unitIds: members.slice(3_000) };
        })(),
      );
      expect(up.cohort?.size).toBe(6_000n);
      const { job } = await jobs.startJob({ spec: { kind: JobKind.ASSIGN, cohort: "pooled-cohort", experimentKeys: ["pooled"] } });
      let last: Job | undefined;
      for await (const m of jobs.watchJob({ id: job!.id }, { timeoutMs: 120_000 })) last = m.job;
      expect([last?.state, last?.processedUnits]).toEqual([JobState.DONE, 6_000n]);
      const jobStored = await storedAssignments(db.url, "pooled");
      // The job ran after the weight change: every member is new, and "b" under W2.
      for (const u of members) expect(jobStored.get(u)?.variant, u).toBe("b");
    } finally {
      cohorts.close();
      jobs.close();
    }

    // It all went through PgBouncer, which never used more than its 3 server connections; the
    // only other connections are the ones DATABASE_DIRECT_URL is for (LISTEN, job-chunk locks).
    expect((await pooledTransactions()) - before).toBeGreaterThan(50);
    const pooledPorts = new Set(
      (await bouncer.show<{ database: string; local_port: string }>("SERVERS"))
        .filter((r) => r.database === db.name)
        .map((r) => Number(r.local_port)),
    );
    const backends = await sql<{ app: string; port: number }>(
      db.url,
      "SELECT application_name AS app, client_port AS port FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    const pooled = backends.filter((x) => pooledPorts.has(x.port));
    const direct = backends.filter((x) => !pooledPorts.has(x.port));
    expect(pooled.length).toBeGreaterThan(0);
    expect(pooled.length).toBeLessThanOrEqual(3);
    expect(new Set(direct.map((x) => x.app))).toEqual(new Set(["assignment-server-listen", "assignment-server-locks"]));
  });
});
