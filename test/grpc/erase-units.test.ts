/**
 * EraseUnits (SPEC.md "Stored assignments": erasing a unit removes its stored assignments and
 * overrides in every experiment, from the store and every cache, in one call; erased units are
 * evaluated anew). A real server on PostgreSQL and Redis, through the gRPC client; what is stored
 * is read back with SQL.
 *
 * Units are stored under weights W1, then the weights change to W2: an erased unit is answered NEW
 * with its W2 variant (evaluated anew), where a unit still stored (or still cached anywhere) would
 * answer STICKY with its W1 variant.
 */
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ImportPolicy, Reason, columnAnswers } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, sql, status, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const W1 = [
  { key: "a", weight: 9000 },
  { key: "b", weight: 1000 },
];
const W2 = [
  { key: "a", weight: 1000 },
  { key: "b", weight: 9000 },
];

async function running(key: string, unitType = "user_id") {
  await t.experiments.createExperiment({ key, variants: W1, unitType, status: ExperimentStatus.RUNNING });
}
async function reweigh(key: string) {
  const e = (await t.experiments.getExperiment({ key })).experiment!;
  await t.experiments.updateExperiment({ key, version: e.version, variants: { variants: W2 } });
}
const rows = async (unitIds: string[]) =>
  sql<{ key: string; unit_id: string; source: number }>(
    t.databaseUrl,
    `SELECT e.key, a.unit_id, a.source FROM assignments a JOIN experiments e ON e.id = a.experiment_id
      WHERE a.unit_id = ANY($1::text[]) ORDER BY e.key, a.unit_id`,
    [unitIds],
  );

describe("EraseUnits", () => {
  it("refuses bad input with INVALID_ARGUMENT naming the field and the rule, and erases nothing", async () => {
    await running("erase-bad");
    await t.assignments.bulkAssign({ experimentKey: "erase-bad", unitIds: ["keep-1", "keep-2"] });
    const before = await rows(["keep-1", "keep-2"]);
    expect(before).toHaveLength(2);
    await expectFailure(t.experiments.eraseUnits({ unitIds: [] }), status.INVALID_ARGUMENT, "unit_ids", "1 to 10000");
    await expectFailure(
      t.experiments.eraseUnits({ unitIds: ["keep-1", ...units("x-", 10_000)] }),
      status.INVALID_ARGUMENT,
      "unit_ids",
      "10000",
      "10001",
    );
    await expectFailure(t.experiments.eraseUnits({ unitIds: ["keep-1", ""] }), status.INVALID_ARGUMENT, "unit_ids[1]");
    await expectFailure(t.experiments.eraseUnits({ unitIds: ["keep-1", "nul\u0000"] }), status.INVALID_ARGUMENT, "unit_ids[1]");
    await expectFailure(t.experiments.eraseUnits({ unitIds: ["keep-1", "x".repeat(513)] }), status.INVALID_ARGUMENT, "unit_ids[1]");
    await expectFailure(t.experiments.eraseUnits({ unitType: "Not A Type", unitIds: ["keep-1"] }), status.INVALID_ARGUMENT, "unit_type");
    expect(await rows(["keep-1", "keep-2"])).toEqual(before);
  });

  it("removes the units' stored assignments and overrides in every experiment of their unit type, and nothing else; they are evaluated anew", async () => {
    await running("erase-one");
    await running("erase-two");
    await running("erase-device", "device_id");
    const erased = units("gone-", 300);
    const kept = units("kept-", 300);
    for (const key of ["erase-one", "erase-two"]) {
      await t.assignments.bulkAssign({ experimentKey: key, unitIds: [...erased, ...kept] });
    }
    // The same ids as devices: another unit type, not erased.
    await t.assignments.bulkAssign({ experimentKey: "erase-device", unitType: "device_id", unitIds: erased.slice(0, 10) });
    // An override (of an erased unit and of a kept one), and an imported (overwritten) value.
    await t.experiments.setOverrides({
      experimentKey: "erase-one",
      overrides: [
        { unitId: erased[0]!, variantKey: "b" },
        { unitId: kept[0]!, variantKey: "b" },
      ],
    });
    await t.experiments.importAssignments(
      (async function* () {
        yield { setup: { policy: ImportPolicy.OVERWRITE }, rows: [{ experimentKey: "erase-two", unitId: erased[1]!, variantKey: "b" }] };
      })(),
    );
    // Cached everywhere: this server answered them all (memory), and filled Redis.
    for (const key of ["erase-one", "erase-two"]) await t.assignments.bulkAssign({ experimentKey: key, unitIds: erased });
    await t.server.assigner.flush();
    const overrideCount = async () =>
      (await sql<{ n: number }>(t.databaseUrl, `SELECT override_count AS n FROM experiments WHERE key = 'erase-one'`))[0]!.n;
    expect(await overrideCount()).toBe(2);
    for (const key of ["erase-one", "erase-two"]) await reweigh(key);

    const r = await t.experiments.eraseUnits({ unitIds: [...erased, erased[2]!] }); // a repeat is erased once
    // 300 units stored in two experiments; in the first, one of them also has an override (kept
    // apart from its stored assignment, SPEC "Stored assignments"): both go.
    expect([r.assignments, r.overrides, r.experiments]).toEqual([600n, 1n, 2]);
    const overridesLeft = await sql<{ unit_id: string }>(
      t.databaseUrl,
      `SELECT unit_id FROM overrides o JOIN experiments e ON e.id = o.experiment_id WHERE e.key = 'erase-one' ORDER BY unit_id`,
    );
    expect(overridesLeft.map((o) => o.unit_id)).toEqual([kept[0]]);

    const left = await rows([...erased, ...kept]);
    expect(left.filter((x) => x.unit_id.startsWith("gone-") && x.key !== "erase-device")).toEqual([]);
    expect(left.filter((x) => x.key === "erase-device")).toHaveLength(10);
    expect(left.filter((x) => x.unit_id.startsWith("kept-"))).toHaveLength(600);
    expect(await overrideCount()).toBe(1);

    // Evaluated anew under today's weights (W2), NEW, by the server that erased them (its caches
    // held the old values); kept units still answer their stored (W1) variant, the kept override
    // its override.
    for (const key of ["erase-one", "erase-two"]) {
      const again = columnAnswers((await t.assignments.bulkAssign({ experimentKey: key, unitIds: erased })).column!);
      expect(again.map((a) => [a.variantKey, a.reason])).toEqual(erased.map((u) => [specVariant(u, key, W2), Reason.NEW]));
      const still = columnAnswers((await t.assignments.bulkAssign({ experimentKey: key, unitIds: kept })).column!);
      expect(still.map((a) => [a.variantKey, a.reason])).toEqual(
        kept.map((u, i) => (key === "erase-one" && i === 0 ? ["b", Reason.OVERRIDE] : [specVariant(u, key, W1), Reason.STICKY])),
      );
    }

    // Audited with counts, never ids: one row per experiment that held any.
    for (const key of ["erase-one", "erase-two"]) {
      const { changes } = await t.experiments.listChanges({ objectKind: "experiment", objectKey: key, pageSize: 1 });
      const c = changes[0]!;
      expect([c.rpc, c.versionBefore, c.versionAfter === c.versionBefore]).toEqual(["EraseUnits", c.versionBefore, true]);
      const fields = Object.fromEntries(c.fields.map((f) => [f.field, toJson(ValueSchema, f.after!)]));
      expect(fields).toMatchObject(
        key === "erase-one"
          ? { units_erased: 300, assignments_erased: 300, overrides_erased: 1, override_count: 1 }
          : { units_erased: 300, assignments_erased: 300, overrides_erased: 0 },
      );
      expect(JSON.stringify(c.fields.map((f) => [f.field, toJson(ValueSchema, f.before!), toJson(ValueSchema, f.after!)]))).not.toContain(
        "gone-",
      );
    }

    // Erasing again removes what was stored since (the NEW answers above), then nothing.
    expect((await t.experiments.eraseUnits({ unitIds: erased })).assignments).toBe(600n);
    expect(await t.experiments.eraseUnits({ unitIds: erased })).toMatchObject({ assignments: 0n, overrides: 0n, experiments: 0 });
  });

  it("an erased unit of another type is not touched: erasing device ids leaves user ids alone", async () => {
    await running("erase-types");
    await running("erase-types-device", "device_id");
    await t.assignments.assign({ experimentKey: "erase-types", unitId: "same-id" });
    await t.assignments.assign({ experimentKey: "erase-types-device", unitType: "device_id", unitId: "same-id" });
    const r = await t.experiments.eraseUnits({ unitType: "device_id", unitIds: ["same-id"] });
    expect([r.assignments, r.experiments]).toEqual([1n, 1]);
    expect((await rows(["same-id"])).map((x) => x.key)).toEqual(["erase-types"]);
  });
});
