/**
 * ImportAssignments (proto: "All or nothing: rows are staged, then merged in one transaction.
 * Invalid rows refuse the whole import … unless the setup allows skipping them"; ImportPolicy),
 * and what every later read answers (SPEC.md: "imported assignments answer STICKY"; "a change to
 * a stored value (override, overwrite import) is never answered stale from any cache layer once
 * the changing call returned").
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExperimentStatus,
  ImportPolicy,
  Layer,
  Reason,
  Source,
  columnAnswers,
  type AssignmentService,
  type Client,
  type ExperimentService,
  type ImportAssignmentsRequestSchema,
  type ImportRowSchema,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { IMPORT_CHUNK_ROWS } from "../../src/store/transfer-store.js";
import {
  eventually,
  expectFailure,
  separateClients,
  specVariant,
  sql,
  status,
  storedAssignments,
  units,
  type WeightedVariant,
} from "../grpc/helpers.js";
import { chunk, differences, responseAnswers, runStream, streamRequests } from "./support/streams.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

type Row = MessageInitShape<typeof ImportRowSchema>;
type ImportRequest = MessageInitShape<typeof ImportAssignmentsRequestSchema>;

const variants: WeightedVariant[] = [
  { key: "v0", weight: 3400 },
  { key: "v1", weight: 3300 },
  { key: "v2", weight: 3300 },
];
/** The variant after `k`, so that an imported value always differs from the hashed one. */
const otherThan = (k: string) => variants[(variants.findIndex((v) => v.key === k) + 1) % variants.length].key;
/** A variant picked from the unit id, independent of the experiment's hash. */
const pick = (i: number) => variants[i % variants.length].key;

/** The requests of an import: the setup (when given) in the first message, rows in messages of `per`. */
async function* importRequests(rows: readonly Row[], setup?: ImportRequest["setup"], per = 5_000): AsyncGenerator<ImportRequest> {
  const parts = chunk(rows, per);
  for (const [i, part] of parts.entries()) yield { setup: i === 0 ? setup : undefined, rows: [...part] };
}

const count = async (key: string): Promise<number> =>
  (
    await sql<{ n: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = $1`,
      [key],
    )
  )[0].n;

const create = (key: string) => t.experiments.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });

describe("invalid rows", () => {
  it("one bad variant in the middle of 50,000 rows refuses the import whole, naming the row and the field; nothing is stored", async () => {
    await create("imp-bad");
    const ids = units("imp-bad-", 50_000);
    const rows: Row[] = ids.map((u, i) => ({ experimentKey: "imp-bad", unitId: u, variantKey: pick(i) }));
    rows[25_000] = { ...rows[25_000], variantKey: "no-such-variant" };
    const f = await expectFailure(
      t.experiments.importAssignments(importRequests(rows)),
      status.INVALID_ARGUMENT,
      "rows[25000]",
      "variant_key",
    );
    expect(f.details).toContain("no-such-variant");
    expect(await count("imp-bad")).toBe(0);
    // Not even the rows of the messages before the bad one.
    const [{ n }] = await sql<{ n: number }>(t.databaseUrl, `SELECT count(*)::int AS n FROM assignments WHERE unit_id LIKE 'imp-bad-%'`);
    expect(n).toBe(0);
  });

  it("a bad row after whole chunks were already COPYed into assignments (and one client that gives up midway) leaves no row either", async () => {
    await create("imp-bad-late");
    const total = IMPORT_CHUNK_ROWS + 20_000;
    const bad = IMPORT_CHUNK_ROWS + 10_000; // past the first chunk, which is COPYed before this row is read
    const rows: Row[] = units("imp-bad-late-", total).map((u, i) => ({
      experimentKey: "imp-bad-late",
      unitId: u,
      variantKey: i === bad ? "nope" : pick(i),
    }));
    await expectFailure(t.experiments.importAssignments(importRequests(rows)), status.INVALID_ARGUMENT, `rows[${bad}]`, "variant_key");
    expect(await count("imp-bad-late")).toBe(0);

    // The client stops sending after the first chunk and cancels the call.
    await create("imp-cancel");
    const controller = new AbortController();
    const good = units("imp-cancel-", total).map((u, i) => ({ experimentKey: "imp-cancel", unitId: u, variantKey: pick(i) }));
    const call = t.experiments.importAssignments(
      (async function* () {
        for (const [i, part] of chunk(good, 5_000).entries()) {
          if (i * 5_000 === IMPORT_CHUNK_ROWS + 10_000) {
            await new Promise((r) => setTimeout(r, 200)); // the first chunk is in the database by now
            controller.abort();
            await new Promise(() => {}); // and never sends the rest
          }
          yield { rows: [...part] };
        }
      })(),
      { signal: controller.signal },
    );
    await expectFailure(call, status.CANCELLED);
    // The server rolls back as soon as it sees the cancellation: no transaction is left open
    // holding the rows it COPYed, and a page load of one of them is NEW (not waiting, not STICKY).
    const openTransactions = async () =>
      (
        await sql<{ n: number }>(
          t.databaseUrl,
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`,
        )
      )[0].n;
    expect(await eventually(async () => (await openTransactions()) === 0, 5_000)).toBe(true);
    const a = (await t.assignments.assign({ experimentKey: "imp-cancel", unitId: good[17].unitId }, { timeoutMs: 5_000 })).assignment!;
    expect(a.reason).toBe(Reason.NEW);
    expect(await count("imp-cancel")).toBe(1);

    // Small imports cancelled right after their only message, so the cancel races the commit.
    await create("imp-cancel-small");
    for (let round = 0; round < 5; round++) {
      const c = new AbortController();
      const small = units(`imp-cancel-small-${round}-`, 500).map((u, i) => ({
        experimentKey: "imp-cancel-small",
        unitId: u,
        variantKey: pick(i),
      }));
      const smallCall = t.experiments.importAssignments(
        (async function* () {
          yield { rows: small };
          c.abort();
          await new Promise(() => {});
        })(),
        { signal: c.signal },
      );
      await expectFailure(smallCall, status.CANCELLED);
    }
    expect(await eventually(async () => (await openTransactions()) === 0, 5_000)).toBe(true);
    expect(await count("imp-cancel-small")).toBe(0);
  });

  it("with setup.skip_invalid the valid rows are imported; invalid ones are counted and the first reported with their positions", async () => {
    await create("imp-skip");
    const ids = units("imp-skip-", 50_000);
    const rows: Row[] = ids.map((u, i) => ({ experimentKey: "imp-skip", unitId: u, variantKey: pick(i) }));
    const bad = new Map<number, string>([
      [100, "unit_id"],
      [25_000, "variant_key"],
      [40_000, "experiment_key"],
      [49_999, "variant_key"],
    ]);
    rows[100] = { ...rows[100], unitId: "" };
    rows[25_000] = { ...rows[25_000], variantKey: "no-such-variant" };
    rows[40_000] = { ...rows[40_000], experimentKey: "no-such-experiment" };
    rows[49_999] = { ...rows[49_999], variantKey: "" };
    const res = await t.experiments.importAssignments(importRequests(rows, { skipInvalid: true }));
    expect({ received: res.received, imported: res.imported, skipped: res.skipped, invalid: res.invalid }).toEqual({
      received: 50_000n,
      imported: BigInt(50_000 - bad.size),
      skipped: 0n,
      invalid: BigInt(bad.size),
    });
    expect(res.errors.map((e) => Number(e.position))).toEqual([...bad.keys()]);
    res.errors.forEach((e) => expect(e.message).toContain(bad.get(Number(e.position))!));

    const stored = await storedAssignments(t.databaseUrl, "imp-skip");
    expect(stored.size).toBe(50_000 - bad.size);
    const wrong = ids.filter((u, i) => {
      const s = stored.get(u);
      if (bad.has(i)) return s !== undefined;
      return s?.variant !== pick(i) || s.source !== Source.IMPORT;
    });
    expect(wrong).toEqual([]);
  });
});

describe("policies", () => {
  it("SKIP_EXISTING (the default) keeps what is stored; new units get the imported variant, STICKY and enrolled; the first row of a unit counts", async () => {
    await create("imp-keep");
    const existing = units("imp-keep-old-", 200);
    const fresh = units("imp-keep-new-", 200);
    // Assigned through Assign, one call per unit.
    const first = await Promise.all(existing.map((u) => t.assignments.assign({ experimentKey: "imp-keep", unitId: u })));
    expect(first.every((r) => r.assignment!.reason === Reason.NEW)).toBe(true);

    // Every row names a variant other than the unit's hashed one; every fresh unit appears twice,
    // the second time with yet another variant.
    const want = (u: string) => otherThan(specVariant(u, "imp-keep", variants));
    const rows: Row[] = [
      ...existing.map((u) => ({ experimentKey: "imp-keep", unitId: u, variantKey: want(u) })),
      ...fresh.map((u) => ({ experimentKey: "imp-keep", unitId: u, variantKey: want(u) })),
      ...fresh.map((u) => ({ experimentKey: "imp-keep", unitId: u, variantKey: otherThan(want(u)) })),
    ];
    const res = await t.experiments.importAssignments(importRequests(rows, undefined, 150));
    expect({ received: res.received, imported: res.imported, skipped: res.skipped, invalid: res.invalid }).toEqual({
      received: 600n,
      imported: 200n,
      skipped: 400n,
      invalid: 0n,
    });

    const old = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "imp-keep", unitIds: existing })).column!);
    expect(
      differences(existing, old, (u) => ({
        variantKey: specVariant(u, "imp-keep", variants),
        reason: Reason.STICKY,
        enrolled: true,
        stored: true,
      })),
    ).toEqual([]);
    const now = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "imp-keep", unitIds: fresh })).column!);
    expect(differences(fresh, now, (u) => ({ variantKey: want(u), reason: Reason.STICKY, enrolled: true, stored: true }))).toEqual([]);
    for (const u of fresh.slice(0, 5)) {
      const a = (await t.assignments.assign({ experimentKey: "imp-keep", unitId: u })).assignment!;
      expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual([want(u), Reason.STICKY, true, true]);
    }
    const stored = await storedAssignments(t.databaseUrl, "imp-keep");
    expect(existing.filter((u) => stored.get(u)?.source !== Source.HASH)).toEqual([]);
    expect(fresh.filter((u) => stored.get(u)?.source !== Source.IMPORT || stored.get(u)?.variant !== want(u))).toEqual([]);
  });

  describe("OVERWRITE", () => {
    const peers: RunningServer[] = [];
    const peerClients: Array<{ assignments: Client<typeof AssignmentService>; experiments: Client<typeof ExperimentService> }> = [];
    afterAll(async () => {
      for (const c of peerClients) {
        c.assignments.close();
        c.experiments.close();
      }
      for (const p of peers) await p.close();
    });

    it("what was imported is what every read answers at once, from every cache layer, here and (after its config refresh) on another server", async () => {
      const before = (await create("imp-over")).experiment!;
      const peer = await startServer({
        databaseUrl: t.databaseUrl,
        redisUrl: t.redisUrl,
        redisPrefix: t.redisPrefix,
        port: 0,
        logger: createLogger("silent"),
      });
      peers.push(peer);
      const p = separateClients(peer.address);
      peerClients.push(p);

      const ids = units("imp-over-", 40);
      const overridden = "imp-over-override";
      const hashed = (u: string) => specVariant(u, "imp-over", variants);
      const ask = async (c: Client<typeof AssignmentService>, u: string, dryRun = false) =>
        (await c.assign({ experimentKey: "imp-over", unitId: u, options: { explain: true, dryRun } })).assignment!;

      // One unit has an override: the import stores its row, but the override, kept apart, still
      // answers first. (Set first: a change of overrides moves the cache generation on, which would
      // cool the caches warmed below.)
      await t.experiments.setOverrides({ experimentKey: "imp-over", overrides: [{ unitId: overridden, variantKey: "v2" }] });
      const versionBefore = (await t.experiments.getExperiment({ key: "imp-over" })).experiment!.version;
      expect(versionBefore).toBeGreaterThan(before.version);
      expect(
        await eventually(async () => (await ask(p.assignments, "imp-over-probe", true)).experimentVersion === versionBefore, 2_000),
      ).toBe(true);

      // Warm every layer: stored in PostgreSQL and Redis by the first call, memory by the second.
      for (const u of ids) expect((await ask(t.assignments, u)).reason).toBe(Reason.NEW);
      for (const u of ids) {
        const a = await ask(t.assignments, u);
        expect([a.variantKey, a.reason, a.explanation!.layer]).toEqual([hashed(u), Reason.STICKY, Layer.MEMORY]);
      }
      // The peer: from Redis first, then from its own memory.
      for (const u of ids) {
        const a = await ask(p.assignments, u);
        expect([a.variantKey, a.reason]).toEqual([hashed(u), Reason.STICKY]);
        expect([Layer.REDIS, Layer.MEMORY]).toContain(a.explanation!.layer);
      }
      for (const u of ids) expect((await ask(p.assignments, u)).explanation!.layer).toBe(Layer.MEMORY);
      // Still warm here, right before the import.
      for (const u of ids) expect((await ask(t.assignments, u)).explanation!.layer).toBe(Layer.MEMORY);

      // Import: every unit to a variant other than its hashed one; the first row of a unit counts.
      const rows: Row[] = [
        ...ids.map((u) => ({ experimentKey: "imp-over", unitId: u, variantKey: otherThan(hashed(u)) })),
        ...ids.map((u) => ({ experimentKey: "imp-over", unitId: u, variantKey: hashed(u) })),
        { experimentKey: "imp-over", unitId: overridden, variantKey: "v0" },
      ];
      const res = await t.experiments.importAssignments(importRequests(rows, { policy: ImportPolicy.OVERWRITE }, 30));
      expect({ received: res.received, imported: res.imported, invalid: res.invalid }).toEqual({
        received: 81n,
        imported: 41n,
        invalid: 0n,
      });
      expect(res.skipped).toBe(40n);
      const version = (await t.experiments.getExperiment({ key: "imp-over" })).experiment!.version;
      expect(version).toBeGreaterThan(versionBefore);

      // This server, at once: Assign, BulkAssign and StreamAssign all answer the imported variant.
      const want = (u: string) => ({ variantKey: otherThan(hashed(u)), reason: Reason.STICKY, enrolled: true, stored: true });
      for (const u of ids) {
        const a = await ask(t.assignments, u);
        expect({ variantKey: a.variantKey, reason: a.reason, enrolled: a.enrolled, stored: a.stored }, u).toEqual(want(u));
        expect(a.experimentVersion).toBe(version);
      }
      const bulk = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "imp-over", unitIds: ids })).column!);
      expect(differences(ids, bulk, want)).toEqual([]);
      const streamed = await runStream(t.assignments, streamRequests({ experimentKeys: ["imp-over"] }, chunk(ids, 15)));
      expect(
        differences(
          ids,
          streamed.flatMap((r) => responseAnswers(r)[0]),
          want,
        ),
      ).toEqual([]);
      const ov = await ask(t.assignments, overridden);
      expect([ov.variantKey, ov.reason]).toEqual(["v2", Reason.OVERRIDE]);

      // The peer, once it has the new configuration (≤ 2 s), never the old value again.
      const fresh = await eventually(async () => (await ask(p.assignments, "imp-over-probe", true)).experimentVersion === version, 2_000);
      expect(fresh, "peer picked up the new configuration within 2 s").toBe(true);
      for (let round = 0; round < 2; round++) {
        for (const u of ids) {
          const a = await ask(p.assignments, u);
          expect({ variantKey: a.variantKey, reason: a.reason, enrolled: a.enrolled, stored: a.stored }, `${u} round ${round}`).toEqual(
            want(u),
          );
        }
      }
      const peerBulk = columnAnswers((await p.assignments.bulkAssign({ experimentKey: "imp-over", unitIds: ids })).column!);
      expect(differences(ids, peerBulk, want)).toEqual([]);

      const stored = await storedAssignments(t.databaseUrl, "imp-over");
      expect(ids.filter((u) => stored.get(u)?.variant !== otherThan(hashed(u)) || stored.get(u)?.source !== Source.IMPORT)).toEqual([]);
      // The rows the import wrote record the version it moved the experiment to.
      expect(ids.filter((u) => stored.get(u)?.version !== version)).toEqual([]);
      expect(stored.get(overridden)).toMatchObject({ variant: "v0", source: Source.IMPORT, version });
      // Cleared, the override gives way to the imported row.
      await t.experiments.clearOverrides({ experimentKey: "imp-over", unitIds: [overridden] });
      const un = await ask(t.assignments, overridden);
      expect([un.variantKey, un.reason]).toEqual(["v0", Reason.STICKY]);
    });
  });
});

describe("unit ids that need escaping", () => {
  it("tabs, newlines, carriage returns, backslashes, COPY markers and emoji round-trip exactly through import, reads and export", async () => {
    await create("imp-escape");
    const odd = [
      "tab\there",
      "new\nline",
      "carriage\rreturn",
      "crlf\r\n",
      "back\\slash",
      "\\",
      "\\\\",
      "\\N",
      "\\.",
      ".",
      "trailing backslash\\",
      "\\t not a tab",
      "\t\n\r\\ all",
      "emoji 😀🎉",
      "👩‍👩‍👧‍👦",
      "combining é vs é",
      "quote ' \" , ; |",
      "vertical\u000btab and form\u000cfeed and bell\u0007",
      "\u007f del",
      " leading and trailing spaces ",
      "é".repeat(256), // 512 bytes of UTF-8, the longest allowed
    ];
    expect(new Set(odd).size).toBe(odd.length);
    expect(Buffer.byteLength(odd[odd.length - 1])).toBe(512);
    const want = (u: string) => otherThan(specVariant(u, "imp-escape", variants));
    const res = await t.experiments.importAssignments(
      importRequests(odd.map((u) => ({ experimentKey: "imp-escape", unitId: u, variantKey: want(u) }))),
    );
    expect({ imported: res.imported, invalid: res.invalid, skipped: res.skipped }).toEqual({
      imported: BigInt(odd.length),
      invalid: 0n,
      skipped: 0n,
    });

    // PostgreSQL holds exactly these ids, each with its variant.
    const stored = await storedAssignments(t.databaseUrl, "imp-escape");
    expect([...stored.keys()].sort()).toEqual([...odd].sort());
    expect(odd.filter((u) => stored.get(u)!.variant !== want(u))).toEqual([]);

    // Reads find them under their exact ids.
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "imp-escape", unitIds: odd })).column!);
    expect(differences(odd, col, (u) => ({ variantKey: want(u), reason: Reason.STICKY, enrolled: true, stored: true }))).toEqual([]);

    // Export gives them back byte for byte.
    const exported: { unitId: string; variant: string }[] = [];
    for await (const r of t.experiments.exportAssignments({ experimentKey: "imp-escape" })) {
      r.unitIds.forEach((u, i) => exported.push({ unitId: u, variant: r.legend[r.variantIndexes[i]] }));
    }
    expect(exported.map((e) => e.unitId).sort()).toEqual([...odd].sort());
    expect(exported.filter((e) => e.variant !== want(e.unitId))).toEqual([]);
    expect(exported.map((e) => Buffer.from(e.unitId).toString("hex")).sort()).toEqual(
      odd.map((u) => Buffer.from(u).toString("hex")).sort(),
    );
  });
});
