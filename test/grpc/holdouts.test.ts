/**
 * Holdouts (SPEC.md "Holdouts", rule 7) through a real gRPC client against real PostgreSQL and
 * Redis: held-out units get the default variant with HOLDOUT and are not stored; stored units stay
 * STICKY when the share is raised; lowering it releases units; the scope (tags, unit type); salts
 * unique across experiments, namespaces and holdouts; bad input refused naming the field; the audit
 * log; GetHoldoutStats. Expected answers come from SPEC's formulas (helpers.ts): the holdout bucket
 * is `H(unit_id + ":" + holdout_salt) mod 10000`, the variant bucket's formula under its salt.
 */
import { toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, columnAnswers, createClient, ExperimentStatus, Reason } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer } from "../../src/server.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { eventually, expectFailure, specVariant, specVariantBucket, status, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const AB = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const held = (u: string, salt: string, share: number) => specVariantBucket(u, salt) < share;

async function answer(key: string, u: string) {
  return (await t.assignments.assign({ experimentKey: key, unitId: u })).assignment!;
}

describe("holdouts", () => {
  it("hold units out of covered experiments (default variant, HOLDOUT, not stored); stored units stay; raising and lowering the share", async () => {
    await t.experiments.createExperiment({
      key: "ho-e",
      salt: "ho-e-salt",
      variants: AB,
      defaultVariant: "b",
      status: ExperimentStatus.RUNNING,
      tags: ["checkout"],
    });
    // Stored before the holdout exists.
    const early = units("ho-early-", 200);
    for (const u of early) expect((await answer("ho-e", u)).reason).toBe(Reason.NEW);

    const created = (await t.experiments.createHoldout({ key: "ho", salt: "ho-salt", share: 2000, tags: ["checkout", "search"] })).holdout!;
    expect([created.key, created.salt, created.unitType, created.share, created.tags, created.experimentKeys]).toEqual([
      "ho",
      "ho-salt",
      "user_id",
      2000,
      ["checkout", "search"],
      ["ho-e"],
    ]);

    // Early units: STICKY with their first variant, held-out bucket or not (rule 5 before rule 7).
    expect(early.filter((u) => held(u, "ho-salt", 2000)).length).toBeGreaterThan(10);
    for (const u of early) {
      const a = await answer("ho-e", u);
      expect([a.reason, a.variantKey]).toEqual([Reason.STICKY, specVariant(u, "ho-e-salt", AB)]);
    }

    // New units: held out below the share, else hashed and stored.
    const fresh = units("ho-new-", 300);
    const bulk = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "ho-e", unitIds: fresh })).column!);
    fresh.forEach((u, i) => {
      const want = held(u, "ho-salt", 2000)
        ? ["b", Reason.HOLDOUT, false, false]
        : [specVariant(u, "ho-e-salt", AB), Reason.NEW, true, true];
      expect([bulk[i]!.variantKey, bulk[i]!.reason, bulk[i]!.enrolled, bulk[i]!.stored], u).toEqual(want);
    });
    const heldFresh = fresh.filter((u) => held(u, "ho-salt", 2000));
    expect(heldFresh.length).toBeGreaterThan(30);
    let stored = await storedAssignments(t.databaseUrl, "ho-e");
    expect(heldFresh.filter((u) => stored.has(u))).toEqual([]);
    // Asked again (now through the caches' path too): still HOLDOUT, still not stored.
    for (const u of heldFresh.slice(0, 20)) expect((await answer("ho-e", u)).reason).toBe(Reason.HOLDOUT);

    // Raise the share: stored units keep their variant; more new units are held out.
    await t.experiments.updateHoldout({ key: "ho", share: 6000 });
    for (const u of [...early, ...fresh.filter((x) => !held(x, "ho-salt", 2000))]) {
      const a = await answer("ho-e", u);
      expect([a.reason, a.variantKey], u).toEqual([Reason.STICKY, specVariant(u, "ho-e-salt", AB)]);
    }
    const later = units("ho-later-", 200);
    for (const u of later) {
      const a = await answer("ho-e", u);
      expect(a.reason, u).toBe(held(u, "ho-salt", 6000) ? Reason.HOLDOUT : Reason.NEW);
    }

    // GetHoldoutStats: held-out units asked (distinct) and units stored by hashing.
    const heldLater = later.filter((u) => held(u, "ho-salt", 6000));
    stored = await storedAssignments(t.databaseUrl, "ho-e");
    const stats = await t.experiments.getHoldoutStats({ key: "ho" });
    expect(stats.holdoutKey).toBe("ho");
    expect(stats.share).toBe(6000);
    expect(stats.experiments.map((e) => [e.experimentKey, Number(e.heldOut), Number(e.exposed)])).toEqual([
      ["ho-e", heldFresh.length + heldLater.length, stored.size],
    ]);
    expect(stored.size).toBe(early.length + (fresh.length - heldFresh.length) + (later.length - heldLater.length));

    // Lower it to 0: held-out units are released and enrolled anew.
    await t.experiments.updateHoldout({ key: "ho", share: 0 });
    for (const u of [...heldFresh, ...heldLater]) {
      const a = await answer("ho-e", u);
      expect([a.reason, a.variantKey], u).toEqual([Reason.NEW, specVariant(u, "ho-e-salt", AB)]);
    }
  });

  it("covers only experiments carrying its tags, or every experiment of its unit type when it names none", async () => {
    await t.experiments.createExperiment({ key: "sc-tagged", variants: AB, status: ExperimentStatus.RUNNING, tags: ["promo"] });
    await t.experiments.createExperiment({ key: "sc-untagged", variants: AB, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "sc-dev", unitType: "device_id", variants: AB, status: ExperimentStatus.RUNNING });
    await t.experiments.createHoldout({ key: "sc-promo", share: 10_000, tags: ["promo"] });
    const everyDevice = (await t.experiments.createHoldout({ key: "sc-devices", unitType: "device_id", share: 10_000 })).holdout!;
    expect(everyDevice.experimentKeys).toEqual(["sc-dev"]);
    expect((await answer("sc-tagged", "sc-u-1")).reason).toBe(Reason.HOLDOUT);
    expect((await answer("sc-untagged", "sc-u-1")).reason).toBe(Reason.NEW);
    const dev = (await t.assignments.assign({ experimentKey: "sc-dev", unitId: "d-1", unitType: "device_id" })).assignment!;
    expect([dev.reason, dev.variantKey, dev.stored]).toEqual([Reason.HOLDOUT, "a", false]);

    // Tags changed: the scope follows at once.
    await t.experiments.updateHoldout({ key: "sc-promo", tags: { tags: ["elsewhere"] } });
    expect((await answer("sc-tagged", "sc-u-2")).reason).toBe(Reason.NEW);
    expect((await t.experiments.getHoldout({ key: "sc-promo" })).holdout!.experimentKeys).toEqual([]);
    const { holdouts } = await t.experiments.listHoldouts({});
    expect(holdouts.map((h) => h.key)).toEqual([...holdouts.map((h) => h.key)].sort());
    expect(holdouts.map((h) => h.key)).toContain("sc-devices");
  });

  it("salts are unique across experiments, namespaces and holdouts (ALREADY_EXISTS)", async () => {
    await t.experiments.createExperiment({ key: "salt-e", salt: "shared-salt-e", variants: AB });
    await t.experiments.createNamespace({ key: "salt-n", salt: "shared-salt-n", segments: 10 });
    await t.experiments.createHoldout({ key: "salt-h", salt: "shared-salt-h", share: 0, tags: ["none"] });
    await expectFailure(t.experiments.createHoldout({ key: "salt-h2", salt: "shared-salt-e", share: 0 }), status.ALREADY_EXISTS, "salt");
    await expectFailure(t.experiments.createHoldout({ key: "salt-h3", salt: "shared-salt-n", share: 0 }), status.ALREADY_EXISTS, "salt");
    await expectFailure(t.experiments.createHoldout({ key: "salt-h4", salt: "shared-salt-h", share: 0 }), status.ALREADY_EXISTS, "salt");
    await expectFailure(
      t.experiments.createExperiment({ key: "salt-e2", salt: "shared-salt-h", variants: AB }),
      status.ALREADY_EXISTS,
      "holdout:salt-h",
    );
    await expectFailure(t.experiments.createNamespace({ key: "salt-n2", salt: "shared-salt-h" }), status.ALREADY_EXISTS, "salt");
    // The salt defaults to the key, which is then taken too.
    await t.experiments.createExperiment({ key: "salt-default", variants: AB });
    await expectFailure(t.experiments.createHoldout({ key: "salt-default", share: 0 }), status.ALREADY_EXISTS, "experiment:salt-default");
    await expectFailure(t.experiments.createHoldout({ key: "salt-h", salt: "other", share: 0 }), status.ALREADY_EXISTS, "key");
    const keys = (await t.experiments.listHoldouts({})).holdouts.map((h) => h.key);
    for (const k of ["salt-h2", "salt-h3", "salt-h4"]) expect(keys).not.toContain(k);
  });

  it("bad input is INVALID_ARGUMENT naming the field, and nothing is stored or changed", async () => {
    await expectFailure(t.experiments.createHoldout({ key: "bad-1", share: 10_001 }), status.INVALID_ARGUMENT, "share");
    await expectFailure(
      t.experiments.createHoldout({ key: "bad-2", share: 1, unitType: "Device Id" }),
      status.INVALID_ARGUMENT,
      "unit_type",
    );
    await expectFailure(t.experiments.createHoldout({ key: "Bad Key", share: 1 }), status.INVALID_ARGUMENT, "key");
    await expectFailure(t.experiments.createHoldout({ key: "bad-3", share: 1, tags: ["Not A Tag"] }), status.INVALID_ARGUMENT, "tags[0]");
    await expectFailure(t.experiments.createHoldout({ key: "bad-4", salt: "", share: 1 }), status.INVALID_ARGUMENT, "salt");
    await t.experiments.createHoldout({ key: "fixed", salt: "fixed-salt", share: 100, tags: ["x"] });
    await expectFailure(t.experiments.updateHoldout({ key: "fixed", share: 20_000 }), status.INVALID_ARGUMENT, "share");
    await expectFailure(t.experiments.updateHoldout({ key: "fixed", salt: "other-salt" }), status.INVALID_ARGUMENT, "salt");
    await expectFailure(t.experiments.updateHoldout({ key: "fixed", unitType: "device_id" }), status.INVALID_ARGUMENT, "unit_type");
    await expectFailure(t.experiments.updateHoldout({ key: "missing", share: 1 }), status.NOT_FOUND, "missing");
    const keys = (await t.experiments.listHoldouts({})).holdouts.map((h) => h.key);
    for (const k of ["bad-1", "bad-2", "bad-3", "bad-4"]) expect(keys).not.toContain(k);
    const h = (await t.experiments.getHoldout({ key: "fixed" })).holdout!;
    expect([h.salt, h.unitType, h.share, h.tags]).toEqual(["fixed-salt", "user_id", 100, ["x"]]);
    // Naming the current salt and unit type is no change.
    const same = (await t.experiments.updateHoldout({ key: "fixed", salt: "fixed-salt", unitType: "user_id", share: 150 })).holdout!;
    expect(same.share).toBe(150);
    // Versions: 1 at creation, one more per change; an update naming an older one is ABORTED.
    expect(same.version).toBe(2n);
    expect((await t.experiments.updateHoldout({ key: "fixed", version: 2n, share: 200 })).holdout!.version).toBe(3n);
    await expectFailure(t.experiments.updateHoldout({ key: "fixed", version: 2n, share: 300 }), status.ABORTED, "version", "at version 3");
    expect((await t.experiments.getHoldout({ key: "fixed" })).holdout!).toMatchObject({ version: 3n, share: 200 });
    const { changes } = await t.experiments.listChanges({ objectKind: "holdout", objectKey: "fixed" });
    expect(changes.map((c) => [c.rpc, c.versionBefore, c.versionAfter])).toEqual([
      ["UpdateHoldout", 2n, 3n],
      ["UpdateHoldout", 1n, 2n],
      ["CreateHoldout", undefined, 1n],
    ]);
  });

  it("creations and changes are in the audit log", async () => {
    await t.experiments.createHoldout({ key: "au", salt: "au-salt", share: 10, tags: ["t1"] });
    await t.experiments.updateHoldout({ key: "au", share: 20 });
    await t.experiments.updateHoldout({ key: "au", share: 20 }); // no change: not recorded
    await t.experiments.updateHoldout({ key: "au", tags: { tags: ["t2"] } });
    const { changes } = await t.experiments.listChanges({ objectKind: "holdout", objectKey: "au" });
    const fields = changes.map((c) => [c.rpc, Object.fromEntries(c.fields.map((f) => [f.field, [json(f.before), json(f.after)]]))]);
    expect(fields).toEqual([
      ["UpdateHoldout", { tags: [["t1"], ["t2"]] }],
      ["UpdateHoldout", { share: [10, 20] }],
      [
        "CreateHoldout",
        {
          key: [null, "au"],
          salt: [null, "au-salt"],
          unit_type: [null, "user_id"],
          hash_version: [null, 1],
          share: [null, 10],
          tags: [null, ["t1"]],
        },
      ],
    ]);
  });

  it("reach another server sharing the store like any configuration change (NOTIFY)", async () => {
    const other = await startServer({
      databaseUrl: t.databaseUrl,
      redisUrl: t.redisUrl,
      redisPrefix: t.redisPrefix,
      port: 0,
      logger: createLogger("silent"),
    });
    const b = createClient(AssignmentService, other.address, { timeoutMs: 30_000 });
    try {
      await t.experiments.createExperiment({ key: "xs-e", variants: AB, status: ExperimentStatus.RUNNING, tags: ["xs"] });
      const ids = units("xs-u-", 200);
      const answerOnB = async (u: string) => (await b.assign({ experimentKey: "xs-e", unitId: u, options: { dryRun: true } })).assignment!;
      expect(await eventually(async () => (await answerOnB(ids[0]!)).reason === Reason.NEW, 10_000)).toBe(true);
      // Created on the first server: the second holds out exactly SPEC's units.
      await t.experiments.createHoldout({ key: "xs-h", salt: "xs-salt", share: 3000, tags: ["xs"] });
      const heldIds = ids.filter((u) => held(u, "xs-salt", 3000));
      expect(heldIds.length).toBeGreaterThan(20);
      expect(await eventually(async () => (await answerOnB(heldIds[0]!)).reason === Reason.HOLDOUT, 10_000)).toBe(true);
      for (const u of ids) expect((await answerOnB(u)).reason, u).toBe(held(u, "xs-salt", 3000) ? Reason.HOLDOUT : Reason.NEW);
      // Lowered to 0 on the first server: the second releases them.
      await t.experiments.updateHoldout({ key: "xs-h", share: 0 });
      expect(await eventually(async () => (await answerOnB(heldIds[0]!)).reason === Reason.NEW, 10_000)).toBe(true);
      for (const u of heldIds) expect((await answerOnB(u)).reason, u).toBe(Reason.NEW);
    } finally {
      b.close();
      await other.close();
    }
  });

  it("EraseUnits removes the notes that a unit was held out", async () => {
    await t.experiments.createExperiment({ key: "er-e", variants: AB, status: ExperimentStatus.RUNNING, tags: ["er"] });
    await t.experiments.createHoldout({ key: "er-h", share: 10_000, tags: ["er"] });
    await t.assignments.bulkAssign({ experimentKey: "er-e", unitIds: ["er-1", "er-2", "er-3"] });
    const count = async () => Number((await t.experiments.getHoldoutStats({ key: "er-h" })).experiments[0]!.heldOut);
    expect(await count()).toBe(3);
    await t.experiments.eraseUnits({ unitIds: ["er-1", "er-2"] });
    expect(await count()).toBe(1);
  });
});

/** A FieldChange's value as JSON (null when unset). */
const json = (v: Value | undefined) => (v ? toJson(ValueSchema, v) : null);
