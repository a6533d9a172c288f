/**
 * AssignmentService through a real gRPC client against a real server (PostgreSQL + Redis):
 * answers recomputed from the SPEC.md formulas, bulk and matrix answers equal to single ones,
 * shape errors, dry runs, explanations (buckets and layers) and params.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Layer, Reason, type Assignment, type AssignmentColumn, type Explanation } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { flushPrefix } from "../support/services.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import {
  ENROLLED,
  eventually,
  expectFailure,
  separateClients,
  specInRollout,
  specRolloutBucket,
  specSegment,
  specVariant,
  specVariantBucket,
  sql,
  status,
  storedAssignments,
  units,
} from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const V3 = [
  { key: "red", weight: 2000 },
  { key: "green", weight: 3000 },
  { key: "blue", weight: 5000 },
];

/** One cell of a column, in the shape of a single answer. */
function cell(col: AssignmentColumn, i: number) {
  return {
    variantKey: col.legend[col.variantIndexes[i]],
    reason: col.reasons[i],
    enrolled: col.enrolled[i],
    stored: col.stored[i],
  };
}
const single = (a: Assignment) => ({ variantKey: a.variantKey, reason: a.reason, enrolled: a.enrolled, stored: a.stored });
/** The same answer read again: a NEW answer reads back as STICKY. */
const reread = (x: ReturnType<typeof single>) => ({ ...x, reason: x.reason === Reason.NEW ? Reason.STICKY : x.reason });

describe("Assign follows the SPEC formulas", () => {
  it("variant = first i with H(unit:salt) % 10000 < cumulative weight; stored; then STICKY", async () => {
    const salt = "colour salt ✓";
    const e = (await t.experiments.createExperiment({ key: "colour", salt, variants: V3, status: ExperimentStatus.RUNNING })).experiment!;
    const ids = units("user-", 400);
    const seen = new Map<string, number>();
    for (const u of ids) {
      const a = (await t.assignments.assign({ experimentKey: "colour", unitId: u })).assignment!;
      expect(a.experimentKey).toBe("colour");
      expect(a.variantKey).toBe(specVariant(u, salt, V3));
      expect([a.reason, a.enrolled, a.stored]).toEqual([Reason.NEW, true, true]);
      expect(a.experimentVersion).toBe(e.version);
      expect(a.explanation).toBeUndefined();
      expect(a.params).toBeUndefined();
      seen.set(a.variantKey, (seen.get(a.variantKey) ?? 0) + 1);
    }
    expect([...seen.keys()].sort()).toEqual(["blue", "green", "red"]);
    // What the database holds is exactly what was answered.
    const stored = await storedAssignments(t.databaseUrl, "colour");
    expect(stored.size).toBe(ids.length);
    for (const u of ids) expect(stored.get(u)!.variant).toBe(specVariant(u, salt, V3));
    for (const u of ids.slice(0, 50)) {
      const a = (await t.assignments.assign({ experimentKey: "colour", unitId: u, unitType: "user_id" })).assignment!;
      expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual([specVariant(u, salt, V3), Reason.STICKY, true, true]);
    }
  });

  it("rollout: enrolled iff H(unit:salt:rollout) % 10000 < rollout; others get the default, unstored", async () => {
    await t.experiments.createExperiment({
      key: "partial",
      variants: V3,
      rollout: 3000,
      defaultVariant: "green",
      status: ExperimentStatus.RUNNING,
    });
    const ids = units("p-", 600);
    const col = (await t.assignments.bulkAssign({ experimentKey: "partial", unitIds: ids })).column!;
    let enrolled = 0;
    ids.forEach((u, i) => {
      const c = cell(col, i);
      if (specInRollout(u, "partial", 3000)) {
        enrolled++;
        expect(c).toEqual({ variantKey: specVariant(u, "partial", V3), reason: Reason.NEW, enrolled: true, stored: true });
      } else {
        expect(c).toEqual({ variantKey: "green", reason: Reason.NOT_IN_ROLLOUT, enrolled: false, stored: false });
      }
    });
    expect(enrolled).toBeGreaterThan(100);
    expect(enrolled).toBeLessThan(260);
    expect((await storedAssignments(t.databaseUrl, "partial")).size).toBe(enrolled);
  });

  it("unknown experiment, other unit type and invalid input of Assign", async () => {
    const a = (await t.assignments.assign({ experimentKey: "never-created", unitId: "u1" })).assignment!;
    expect([a.experimentKey, a.variantKey, a.reason, a.enrolled, a.stored, a.experimentVersion]).toEqual([
      "never-created",
      "",
      Reason.UNKNOWN_EXPERIMENT,
      false,
      false,
      0n,
    ]);
    const m = (await t.assignments.assign({ experimentKey: "colour", unitId: "u1", unitType: "device_id" })).assignment!;
    expect([m.variantKey, m.reason, m.enrolled, m.stored]).toEqual(["", Reason.UNIT_TYPE_MISMATCH, false, false]);
    await expectFailure(t.assignments.assign({ experimentKey: "colour", unitId: "" }), status.INVALID_ARGUMENT, "unit_id");
  });
});

describe("BulkAssign and MatrixAssign equal the single answers", () => {
  const variants = [
    { key: "A", weight: 3333 },
    { key: "B", weight: 3333 },
    { key: "C", weight: 3334 },
  ];
  beforeAll(async () => {
    await t.experiments.createExperiment({ key: "bulk-x", variants, rollout: 6000, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "bulk-y", variants: V3, status: ExperimentStatus.RUNNING, defaultVariant: "blue" });
    await t.experiments.createExperiment({ key: "bulk-dev", unitType: "device_id", variants: V3, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "bulk-draft", variants: V3 });
  });

  it("BulkAssign: positional, repeats answered alike, per-item reasons, equal to Assign either way round", async () => {
    const base = units("bk-", 300);
    const bad = ["", "nul\u0000id", "x".repeat(600)];
    // Units, some repeated, invalid ones in between.
    const request = [...base.slice(0, 150), bad[0], base[3], base[3], bad[1], ...base.slice(150), base[0], bad[2], base[299]];

    // Half the units are asked singly first, then everything in bulk.
    const singleFirst = new Map<string, ReturnType<typeof single>>();
    for (const u of base.slice(0, 150))
      singleFirst.set(u, single((await t.assignments.assign({ experimentKey: "bulk-x", unitId: u })).assignment!));

    const col = (await t.assignments.bulkAssign({ experimentKey: "bulk-x", unitIds: request })).column!;
    expect(col.experimentKey).toBe("bulk-x");
    expect(col.legend).toEqual(["", "A", "B", "C"]);
    for (const arr of [col.variantIndexes, col.reasons, col.enrolled, col.stored]) expect(arr.length).toBe(request.length);
    expect(col.explanations).toEqual([]);
    expect(col.legendParams).toEqual([]);

    const firstAnswer = new Map<string, ReturnType<typeof cell>>();
    request.forEach((u, i) => {
      const c = cell(col, i);
      if (bad.includes(u)) {
        expect(c, `bad unit at ${i}`).toEqual({ variantKey: "", reason: Reason.INVALID_UNIT, enrolled: false, stored: false });
        expect(col.variantIndexes[i]).toBe(0);
        return;
      }
      // Repeated units get the same answer each time, within the same request.
      const prev = firstAnswer.get(u);
      if (prev) expect(c, `repeat of ${u} at ${i}`).toEqual(prev);
      else firstAnswer.set(u, c);
      // SPEC.
      const inRollout = specInRollout(u, "bulk-x", 6000);
      expect(c.variantKey).toBe(inRollout ? specVariant(u, "bulk-x", variants) : "A");
      if (singleFirst.has(u)) expect(c, u).toEqual(reread(singleFirst.get(u)!));
      else expect(c.reason).toBe(inRollout ? Reason.NEW : Reason.NOT_IN_ROLLOUT);
    });

    // The other half: bulk first, then singly.
    for (const u of base.slice(150)) {
      const a = single((await t.assignments.assign({ experimentKey: "bulk-x", unitId: u })).assignment!);
      expect(a, u).toEqual(reread(firstAnswer.get(u)!));
    }
    // And bulk again for everything equals single reads now.
    const again = (await t.assignments.bulkAssign({ experimentKey: "bulk-x", unitIds: request })).column!;
    request.forEach((u, i) => {
      if (bad.includes(u)) return;
      expect(cell(again, i)).toEqual(reread(firstAnswer.get(u)!));
    });
    // Exactly one row per distinct valid enrolled unit.
    const stored = await storedAssignments(t.databaseUrl, "bulk-x");
    expect(stored.size).toBe(base.filter((u) => specInRollout(u, "bulk-x", 6000)).length);
  });

  it("BulkAssign: unknown experiment and unit-type mismatch are per-item reasons, not failed calls", async () => {
    const ids = ["a1", "a2", "a1", "\u0000"];
    const unknown = (await t.assignments.bulkAssign({ experimentKey: "bulk-missing", unitIds: ids })).column!;
    expect(unknown.legend).toEqual([""]);
    expect(unknown.experimentVersion).toBe(0n);
    expect(unknown.reasons).toEqual(ids.map(() => Reason.UNKNOWN_EXPERIMENT));
    expect(unknown.variantIndexes).toEqual([0, 0, 0, 0]);
    expect(unknown.enrolled).toEqual([false, false, false, false]);

    const mismatch = (await t.assignments.bulkAssign({ experimentKey: "bulk-dev", unitIds: ["a1", "a2"], unitType: "user_id" })).column!;
    expect(mismatch.reasons).toEqual([Reason.UNIT_TYPE_MISMATCH, Reason.UNIT_TYPE_MISMATCH]);
    expect(mismatch.variantIndexes).toEqual([0, 0]);
    const ok = (await t.assignments.bulkAssign({ experimentKey: "bulk-dev", unitIds: ["d1"], unitType: "device_id" })).column!;
    expect(cell(ok, 0)).toEqual({ variantKey: specVariant("d1", "bulk-dev", V3), reason: Reason.NEW, enrolled: true, stored: true });
  });

  it("MatrixAssign: one column per key in request order, each equal to the single answers", async () => {
    const keys = ["bulk-y", "bulk-missing", "bulk-dev", "bulk-x", "bulk-draft", "bulk-y"];
    const ids = [...units("mx-", 200), "mx-7", "", "mx-199", "z\u0000"];
    const res = await t.assignments.matrixAssign({ experimentKeys: keys, unitIds: ids });
    expect(res.columns.map((c) => c.experimentKey)).toEqual(keys);
    const cols = res.columns;
    for (const c of cols) expect(c.reasons.length).toBe(ids.length);

    ids.forEach((u, i) => {
      const valid = u !== "" && !u.includes("\u0000");
      // bulk-y: running, full rollout. The same key twice in one call answers alike.
      expect(cell(cols[5], i)).toEqual(cell(cols[0], i));
      expect(cell(cols[0], i)).toEqual(
        valid
          ? { variantKey: specVariant(u, "bulk-y", V3), reason: Reason.NEW, enrolled: true, stored: true }
          : { variantKey: "", reason: Reason.INVALID_UNIT, enrolled: false, stored: false },
      );
      expect(cols[1].reasons[i]).toBe(Reason.UNKNOWN_EXPERIMENT);
      expect(cols[2].reasons[i]).toBe(valid ? Reason.UNIT_TYPE_MISMATCH : Reason.INVALID_UNIT);
      if (valid) {
        expect(cell(cols[3], i).variantKey).toBe(specInRollout(u, "bulk-x", 6000) ? specVariant(u, "bulk-x", variants) : "A");
        expect(cell(cols[4], i)).toEqual({ variantKey: "red", reason: Reason.NOT_RUNNING, enrolled: false, stored: false });
      }
    });

    // Every cell equals the single Assign answer, read afterwards (NEW reads back as STICKY).
    for (let j = 0; j < keys.length; j++) {
      for (let i = 0; i < ids.length; i += 7) {
        const u = ids[i];
        if (u === "" || u.includes("\u0000")) continue;
        const a = single((await t.assignments.assign({ experimentKey: keys[j], unitId: u })).assignment!);
        expect(a, `${keys[j]} ${u}`).toEqual(reread(cell(cols[j], i)));
      }
    }
    // Each (experiment, unit) pair was stored once, although the key and units repeated.
    expect((await storedAssignments(t.databaseUrl, "bulk-y")).size).toBe(200);
    const [{ n }] = await sql<{ n: number }>(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM (SELECT experiment_id, unit_id FROM assignments GROUP BY 1, 2 HAVING count(*) > 1) d`,
    );
    expect(n).toBe(0);
  });

  it("shape errors are INVALID_ARGUMENT naming the field and the limit", async () => {
    await expectFailure(t.assignments.bulkAssign({ experimentKey: "bulk-y", unitIds: [] }), status.INVALID_ARGUMENT, "unit_ids", "10000");
    const tooMany = units("s", 10_001);
    await expectFailure(
      t.assignments.bulkAssign({ experimentKey: "bulk-y", unitIds: tooMany }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "10000",
      "10001",
    );
    // 10,000 is allowed.
    const okCol = (
      await t.assignments.bulkAssign({ experimentKey: "bulk-y", unitIds: tooMany.slice(0, 10_000), options: { dryRun: true } })
    ).column!;
    expect(okCol.reasons.length).toBe(10_000);

    await expectFailure(t.assignments.matrixAssign({ experimentKeys: ["bulk-y"], unitIds: [] }), status.INVALID_ARGUMENT, "unit_ids");
    await expectFailure(t.assignments.matrixAssign({ experimentKeys: [], unitIds: ["u"] }), status.INVALID_ARGUMENT, "experiment_keys");
    // 50,001 x 2 = 100,002 cells.
    const half = units("m", 50_001);
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["bulk-y", "bulk-x"], unitIds: half }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "100000",
    );
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["bulk-y"], unitIds: units("m", 100_001) }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "100000",
    );
    // Exactly 100,000 cells is allowed (dry run: nothing stored).
    const full = await t.assignments.matrixAssign({
      experimentKeys: ["bulk-y", "bulk-x"],
      unitIds: half.slice(0, 50_000),
      options: { dryRun: true },
    });
    expect(full.columns.map((c) => c.reasons.length)).toEqual([50_000, 50_000]);
    await expectFailure(t.assignments.assignUnit({ units: {} }), status.INVALID_ARGUMENT, "units");
  });
});

describe("AssignUnit", () => {
  beforeAll(async () => {
    const mk = (key: string, unitType: string, s: ExperimentStatus, tags: string[] = []) =>
      t.experiments.createExperiment({ key, unitType, variants: V3, status: s, tags });
    await mk("au-user-run", "user_id", ExperimentStatus.RUNNING, ["home"]);
    await mk("au-dev-run", "device_id", ExperimentStatus.RUNNING, ["home", "cart"]);
    await mk("au-user-paused", "user_id", ExperimentStatus.PAUSED, ["cart"]);
    await mk("au-user-draft", "user_id", ExperimentStatus.DRAFT, ["home"]);
    await mk("au-acct-run", "account_id", ExperimentStatus.RUNNING, ["home"]);
    const stopped = (await mk("au-user-stopped", "user_id", ExperimentStatus.RUNNING, ["home"])).experiment!;
    await t.experiments.updateExperiment({ key: "au-user-stopped", version: stopped.version, status: ExperimentStatus.STOPPED });
  });

  it("explicit keys: answered in order, each experiment with the id of its own unit type", async () => {
    const keys = ["au-dev-run", "au-user-run", "au-missing", "au-acct-run", "au-user-run", "au-user-draft"];
    const res = await t.assignments.assignUnit({ units: { user_id: "u-42", device_id: "d-9" }, experimentKeys: keys });
    expect(res.assignments.map((a) => a.experimentKey)).toEqual(keys);
    const [dev, user, missing, acct, user2, draft] = res.assignments;
    expect([dev.variantKey, dev.reason]).toEqual([specVariant("d-9", "au-dev-run", V3), Reason.NEW]);
    expect([user.variantKey, user.reason, user.stored]).toEqual([specVariant("u-42", "au-user-run", V3), Reason.NEW, true]);
    expect(single(user2)).toEqual(single(user));
    expect([missing.variantKey, missing.reason]).toEqual(["", Reason.UNKNOWN_EXPERIMENT]);
    expect([acct.variantKey, acct.reason, acct.enrolled]).toEqual(["", Reason.UNIT_TYPE_MISMATCH, false]);
    expect([draft.variantKey, draft.reason]).toEqual(["red", Reason.NOT_RUNNING]);
    // Equal to Assign with the matching unit type.
    const a = (await t.assignments.assign({ experimentKey: "au-dev-run", unitId: "d-9", unitType: "device_id" })).assignment!;
    expect(single(a)).toEqual(reread(single(dev)));
    // An invalid id inside the map is a per-item reason.
    const bad = await t.assignments.assignUnit({
      units: { user_id: "bad\u0000", device_id: "d-9" },
      experimentKeys: ["au-user-run", "au-dev-run"],
    });
    expect(bad.assignments.map((x) => x.reason)).toEqual([Reason.INVALID_UNIT, Reason.STICKY]);
  });

  it("no keys: every RUNNING or PAUSED experiment of the given unit types, sorted by key; tag filter", async () => {
    const keysOf = async (u: Record<string, string>, tag = "") =>
      (await t.assignments.assignUnit({ units: u, tag })).assignments.map((a) => a.experimentKey).filter((k) => k.startsWith("au-"));
    expect(await keysOf({ user_id: "u-1" })).toEqual(["au-user-paused", "au-user-run"]);
    expect(await keysOf({ user_id: "u-1", device_id: "d-1" })).toEqual(["au-dev-run", "au-user-paused", "au-user-run"]);
    expect(await keysOf({ device_id: "d-1" })).toEqual(["au-dev-run"]);
    expect(await keysOf({ user_id: "u-1", device_id: "d-1" }, "home")).toEqual(["au-dev-run", "au-user-run"]);
    expect(await keysOf({ user_id: "u-1", device_id: "d-1" }, "cart")).toEqual(["au-dev-run", "au-user-paused"]);
    expect(await keysOf({ account_id: "acc-1" }, "cart")).toEqual([]);

    const all = (await t.assignments.assignUnit({ units: { user_id: "u-77", device_id: "d-77" } })).assignments;
    // Exactly the running/paused experiments of those types among everything the server has.
    const listed = (await t.experiments.listExperiments({})).experiments
      .filter(
        (e) =>
          (e.status === ExperimentStatus.RUNNING || e.status === ExperimentStatus.PAUSED) && ["user_id", "device_id"].includes(e.unitType),
      )
      .map((e) => e.key);
    expect(all.map((a) => a.experimentKey)).toEqual(listed);
    for (const a of all) {
      const e = (await t.experiments.getExperiment({ key: a.experimentKey })).experiment!;
      const unit = e.unitType === "user_id" ? "u-77" : "d-77";
      if (e.status === ExperimentStatus.PAUSED) expect([a.reason, a.variantKey]).toEqual([Reason.PAUSED, e.defaultVariant]);
      else if (e.namespace === "" && specInRollout(unit, e.salt, e.rollout)) {
        expect([a.reason, a.variantKey]).toEqual([Reason.NEW, specVariant(unit, e.salt, e.variants)]);
      }
    }
  });
});

describe("dry run, explanation and params", () => {
  let second: RunningServer | undefined;
  afterAll(async () => second?.close());

  it("a dry run stores nothing; a later real call answers NEW", async () => {
    await t.experiments.createExperiment({ key: "dry", variants: V3, status: ExperimentStatus.RUNNING });
    const ids = units("dry-", 100);
    const d = (await t.assignments.assign({ experimentKey: "dry", unitId: ids[0], options: { dryRun: true } })).assignment!;
    expect([d.variantKey, d.reason, d.enrolled, d.stored]).toEqual([specVariant(ids[0], "dry", V3), Reason.NEW, true, false]);
    const col = (await t.assignments.bulkAssign({ experimentKey: "dry", unitIds: ids, options: { dryRun: true } })).column!;
    expect(new Set(col.reasons)).toEqual(new Set([Reason.NEW]));
    expect(new Set(col.stored)).toEqual(new Set([false]));
    await t.assignments.matrixAssign({ experimentKeys: ["dry"], unitIds: ids, options: { dryRun: true } });
    await t.assignments.assignUnit({ units: { user_id: ids[1] }, experimentKeys: ["dry"], options: { dryRun: true } });

    expect((await t.experiments.getExperimentStats({ key: "dry" })).totalUnits).toBe(0n);
    expect((await storedAssignments(t.databaseUrl, "dry")).size).toBe(0);

    const real = (await t.assignments.bulkAssign({ experimentKey: "dry", unitIds: ids })).column!;
    ids.forEach((_u, i) => expect(cell(real, i)).toEqual({ ...cell(col, i), stored: true }));
    expect(new Set(real.reasons)).toEqual(new Set([Reason.NEW]));
    expect((await t.experiments.getExperimentStats({ key: "dry" })).totalUnits).toBe(100n);
    // A dry run of a stored unit answers the stored value.
    const d2 = (await t.assignments.assign({ experimentKey: "dry", unitId: ids[0], options: { dryRun: true } })).assignment!;
    expect([d2.reason, d2.stored]).toEqual([Reason.STICKY, true]);
  });

  it("explanation: buckets and segment by the SPEC formulas; layer COMPUTED, MEMORY, REDIS, POSTGRES", async () => {
    await t.experiments.createNamespace({ key: "ex-ns", salt: "ex-ns-salt", segments: 1000 });
    await t.experiments.createExperiment({ key: "ex", salt: "ex-salt", variants: V3, rollout: 7000, status: ExperimentStatus.RUNNING });
    await t.experiments.allocateSegments({ namespaceKey: "ex-ns", experimentKey: "ex", segments: 1000 });
    await t.experiments.createExperiment({ key: "ex-plain", variants: V3, status: ExperimentStatus.RUNNING });

    const expectBuckets = (x: Explanation | undefined, u: string, salt: string, segment: number | undefined) => {
      expect(x).toBeDefined();
      expect(x!.variantBucket).toBe(specVariantBucket(u, salt));
      expect(x!.rolloutBucket).toBe(specRolloutBucket(u, salt));
      expect(x!.segment).toBe(segment);
      expect(x!.hashVersion).toBe(1);
    };
    const ids = units("ex-u", 40);
    for (const u of ids) {
      const a = (await t.assignments.assign({ experimentKey: "ex", unitId: u, options: { explain: true } })).assignment!;
      expectBuckets(a.explanation, u, "ex-salt", specSegment(u, "ex-ns-salt", 1000));
      const enrolled = specInRollout(u, "ex-salt", 7000);
      expect(a.reason).toBe(enrolled ? Reason.NEW : Reason.NOT_IN_ROLLOUT);
      expect(a.explanation!.layer).toBe(Layer.COMPUTED);
      const b = (await t.assignments.assign({ experimentKey: "ex", unitId: u, options: { explain: true } })).assignment!;
      expect(b.explanation!.layer).toBe(enrolled ? Layer.MEMORY : Layer.COMPUTED);
      expect(b.reason).toBe(enrolled ? Reason.STICKY : Reason.NOT_IN_ROLLOUT);
    }
    const p = (await t.assignments.assign({ experimentKey: "ex-plain", unitId: "x1", options: { explain: true } })).assignment!;
    expectBuckets(p.explanation, "x1", "ex-plain", undefined);
    // Packed columns carry one explanation per unit.
    const col = (await t.assignments.bulkAssign({ experimentKey: "ex", unitIds: ids, options: { explain: true } })).column!;
    expect(col.explanations.length).toBe(ids.length);
    ids.forEach((u, i) => expectBuckets(col.explanations[i], u, "ex-salt", specSegment(u, "ex-ns-salt", 1000)));
    // Configuration-only answers come from memory.
    const unknown = (await t.assignments.assign({ experimentKey: "ex-none", unitId: "x1", options: { explain: true } })).assignment!;
    expect(unknown.explanation!.layer).toBe(Layer.MEMORY);

    // A second server process on the same database and Redis prefix, without an in-process
    // cache: stored answers come from Redis, and from PostgreSQL once Redis forgot them.
    second = await startServer({
      databaseUrl: t.databaseUrl,
      redisUrl: t.redisUrl,
      redisPrefix: t.redisPrefix,
      port: 0,
      memoryCacheEntries: 0,
      logger: createLogger("silent"),
    });
    const c2 = separateClients(second.address);
    try {
      const enrolledIds = ids.filter((u) => specInRollout(u, "ex-salt", 7000));
      expect(enrolledIds.length).toBeGreaterThan(10);
      const ask = async (u: string) =>
        (await c2.assignments.assign({ experimentKey: "ex", unitId: u, options: { explain: true } })).assignment!;
      // The new process answers before its Redis connection is up (from PostgreSQL, correctly);
      // wait until it reads Redis, with a unit used only for that.
      const probe = enrolledIds.pop()!;
      expect(await eventually(async () => (await ask(probe)).explanation!.layer === Layer.REDIS, 5_000)).toBe(true);
      for (const u of enrolledIds) {
        const a = await ask(u);
        expect([a.reason, a.variantKey, a.explanation!.layer]).toEqual([Reason.STICKY, specVariant(u, "ex-salt", V3), Layer.REDIS]);
      }
      await flushPrefix(t.redisUrl, t.redisPrefix);
      for (const u of enrolledIds) {
        const a = await ask(u);
        expect([a.reason, a.variantKey, a.explanation!.layer]).toEqual([Reason.STICKY, specVariant(u, "ex-salt", V3), Layer.POSTGRES]);
      }
      // Reading from PostgreSQL filled Redis again.
      const again = await ask(enrolledIds[0]);
      expect(again.explanation!.layer).toBe(Layer.REDIS);
      // The first server still answers from its own memory.
      const mem = (await t.assignments.assign({ experimentKey: "ex", unitId: enrolledIds[1], options: { explain: true } })).assignment!;
      expect(mem.explanation!.layer).toBe(Layer.MEMORY);
    } finally {
      c2.assignments.close();
      c2.experiments.close();
    }
  });

  it("include_params hands out the variant's params, in single and packed answers", async () => {
    const pv = [
      { key: "plain", weight: 5000 },
      { key: "fancy", weight: 5000, params: { color: "gold", size: 12, flags: ["a", "b"], deep: { x: null, y: true } } },
    ];
    await t.experiments.createExperiment({ key: "params", variants: pv, status: ExperimentStatus.RUNNING });
    const ids = units("pp-", 40);
    for (const u of ids.slice(0, 10)) {
      const a = (await t.assignments.assign({ experimentKey: "params", unitId: u, options: { includeParams: true } })).assignment!;
      const want = specVariant(u, "params", pv);
      expect(a.variantKey).toBe(want);
      if (want === "fancy") expect(a.params).toEqual(pv[1].params);
      else expect(a.params ?? {}).toEqual({});
      const noParams = (await t.assignments.assign({ experimentKey: "params", unitId: u })).assignment!;
      expect(noParams.params).toBeUndefined();
    }
    const col = (await t.assignments.bulkAssign({ experimentKey: "params", unitIds: ids, options: { includeParams: true } })).column!;
    expect(col.legend).toEqual(["", "plain", "fancy"]);
    expect(col.legendParams.length).toBe(3);
    expect(col.legendParams[2]).toEqual(pv[1].params);
    expect(col.legendParams[1]).toEqual({});
    const m = (await t.assignments.matrixAssign({ experimentKeys: ["params"], unitIds: ids, options: { includeParams: true } })).columns[0];
    expect(m.legendParams[2]).toEqual(pv[1].params);
    const au = (
      await t.assignments.assignUnit({ units: { user_id: ids[0] }, experimentKeys: ["params"], options: { includeParams: true } })
    ).assignments[0];
    expect(au.variantKey).toBe(specVariant(ids[0], "params", pv));
  });

  it("enrolled is true exactly for OVERRIDE, STICKY and NEW", async () => {
    const col = (
      await t.assignments.matrixAssign({ experimentKeys: ["bulk-x", "bulk-draft", "bulk-missing", "dry"], unitIds: units("en-", 50) })
    ).columns;
    for (const c of col) c.reasons.forEach((r, i) => expect(c.enrolled[i]).toBe(ENROLLED.has(r)));
  });
});
