/**
 * Overrides kept apart from stored assignments (SPEC.md "Stored assignments"): setting an override
 * never changes or removes the unit's stored assignment; clearing it makes the unit answer that
 * stored assignment again (STICKY), or be evaluated anew when it had none. Every read path
 * (Assign, BulkAssign, MatrixAssign, StreamAssign) and every cache layer honours it, and
 * ListOverrides lists the overrides a page at a time.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { columnAnswers, ExperimentStatus, Reason, Source } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, sql, status, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const before = [
  { key: "control", weight: 5000 },
  { key: "treatment", weight: 5000 },
];
const after = [
  { key: "control", weight: 1000 },
  { key: "treatment", weight: 9000 },
];
const other = (k: string) => (k === "control" ? "treatment" : "control");

/** Every answer for `ids` through Assign, BulkAssign, MatrixAssign and StreamAssign, as [variant, reason]. */
async function everyPath(key: string, ids: string[]): Promise<Record<string, [string, Reason][]>> {
  const single: [string, Reason][] = [];
  for (const u of ids) {
    const a = (await t.assignments.assign({ experimentKey: key, unitId: u })).assignment!;
    single.push([a.variantKey, a.reason]);
  }
  const pairs = (col: ReturnType<typeof columnAnswers>) => col.map((a) => [a.variantKey, a.reason] as [string, Reason]);
  const bulk = pairs(columnAnswers((await t.assignments.bulkAssign({ experimentKey: key, unitIds: ids })).column!));
  const matrix = pairs(columnAnswers((await t.assignments.matrixAssign({ experimentKeys: [key], unitIds: ids })).columns[0]!));
  const stream: [string, Reason][] = [];
  for await (const r of t.assignments.streamAssign(
    (async function* () {
      yield { setup: { experimentKeys: [key] } };
      yield { unitIds: ids };
    })(),
  ))
    stream.push(...pairs(columnAnswers(r.columns[0]!)));
  return { single, bulk, matrix, stream };
}

describe("overrides never touch stored assignments", () => {
  it("200 units stored at 50/50, weights 10/90, overrides set and cleared: every unit STICKY with its first variant", async () => {
    const e = (await t.experiments.createExperiment({ key: "apart", variants: before, status: ExperimentStatus.RUNNING })).experiment!;
    const ids = units("ap-", 200);
    const first = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "apart", unitIds: ids })).column!);
    ids.forEach((u, i) => expect([first[i].variantKey, first[i].reason]).toEqual([specVariant(u, "apart", before), Reason.NEW]));
    const firstVariant = new Map(ids.map((u, i) => [u, first[i].variantKey]));
    // Warm the caches (memory and Redis) with the stored values.
    await t.assignments.bulkAssign({ experimentKey: "apart", unitIds: ids });

    await t.experiments.updateExperiment({ key: "apart", version: e.version, variants: { variants: after } });
    // Many of them would hash elsewhere now: the ones a lost stored row would move.
    const wouldMove = ids.filter((u) => specVariant(u, "apart", after) !== firstVariant.get(u));
    expect(wouldMove.length).toBeGreaterThan(40);

    // Override every unit: half to the other variant, half to their own.
    const forced = new Map(ids.map((u, i) => [u, i % 2 === 0 ? other(firstVariant.get(u)!) : firstVariant.get(u)!]));
    await t.experiments.setOverrides({ experimentKey: "apart", overrides: ids.map((u) => ({ unitId: u, variantKey: forced.get(u)! })) });
    for (const [path, answers] of Object.entries(await everyPath("apart", ids))) {
      ids.forEach((u, i) => expect(answers[i], `${path} ${u}`).toEqual([forced.get(u), Reason.OVERRIDE]));
    }
    // The stored rows are exactly as they were.
    const during = await storedAssignments(t.databaseUrl, "apart");
    expect(during.size).toBe(200);
    for (const u of ids) expect(during.get(u), u).toMatchObject({ variant: firstVariant.get(u), source: Source.HASH });

    // Clear: some by unit, the rest all at once.
    await t.experiments.clearOverrides({ experimentKey: "apart", unitIds: ids.slice(0, 70) });
    await t.experiments.clearOverrides({ experimentKey: "apart", all: true });
    for (const [path, answers] of Object.entries(await everyPath("apart", ids))) {
      ids.forEach((u, i) => expect(answers[i], `${path} ${u}`).toEqual([firstVariant.get(u), Reason.STICKY]));
    }
    const afterClear = await storedAssignments(t.databaseUrl, "apart");
    for (const u of ids) expect(afterClear.get(u), u).toMatchObject({ variant: firstVariant.get(u), source: Source.HASH });
  });

  it("a unit overridden before it was ever stored is evaluated anew once cleared; nothing is stored meanwhile", async () => {
    await t.experiments.createExperiment({ key: "apart-new", variants: after, status: ExperimentStatus.RUNNING });
    const ids = units("an-", 40);
    await t.experiments.setOverrides({ experimentKey: "apart-new", overrides: ids.map((u) => ({ unitId: u, variantKey: "control" })) });
    for (const [path, answers] of Object.entries(await everyPath("apart-new", ids))) {
      ids.forEach((u, i) => expect(answers[i], `${path} ${u}`).toEqual(["control", Reason.OVERRIDE]));
    }
    expect((await storedAssignments(t.databaseUrl, "apart-new")).size).toBe(0);
    await t.experiments.clearOverrides({ experimentKey: "apart-new", all: true });
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "apart-new", unitIds: ids })).column!);
    ids.forEach((u, i) => expect([col[i].variantKey, col[i].reason], u).toEqual([specVariant(u, "apart-new", after), Reason.NEW]));
    const stored = await storedAssignments(t.databaseUrl, "apart-new");
    for (const u of ids) expect(stored.get(u), u).toMatchObject({ variant: specVariant(u, "apart-new", after), source: Source.HASH });
  });

  it("an override answers before a stored row in DRAFT, PAUSED and STOPPED alike; stats count overrides apart", async () => {
    const e = (await t.experiments.createExperiment({ key: "apart-st", variants: before, status: ExperimentStatus.RUNNING })).experiment!;
    const ids = units("as-", 10);
    await t.assignments.bulkAssign({ experimentKey: "apart-st", unitIds: ids });
    await t.experiments.setOverrides({ experimentKey: "apart-st", overrides: [{ unitId: ids[0], variantKey: "treatment" }] });
    const stats = await t.experiments.getExperimentStats({ key: "apart-st" });
    const hashed = ids.map((u) => specVariant(u, "apart-st", before));
    expect(stats.variants.map((v) => [v.variantKey, Number(v.units), Number(v.overrides)])).toEqual([
      ["control", hashed.filter((v) => v === "control").length, 0],
      ["treatment", hashed.filter((v) => v === "treatment").length, 1],
    ]);
    let version = (await t.experiments.getExperiment({ key: "apart-st" })).experiment!.version;
    expect(version).toBeGreaterThan(e.version);
    for (const [s, other] of [
      [ExperimentStatus.PAUSED, Reason.STICKY],
      [ExperimentStatus.STOPPED, Reason.NOT_RUNNING],
    ] as const) {
      version = (await t.experiments.updateExperiment({ key: "apart-st", version, status: s })).experiment!.version;
      const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "apart-st", unitIds: ids })).column!);
      expect([col[0].variantKey, col[0].reason]).toEqual(["treatment", Reason.OVERRIDE]);
      expect(col.slice(1).map((a) => a.reason)).toEqual(ids.slice(1).map(() => other));
    }
  });
});

describe("ListOverrides", () => {
  it("pages through every override (one experiment, or all), and refuses bad pages", async () => {
    await t.experiments.createExperiment({ key: "lo-a", variants: before });
    await t.experiments.createExperiment({ key: "lo-b", variants: before });
    const a = units("la-", 23);
    const b = units("lb-", 7);
    await t.experiments.setOverrides({ experimentKey: "lo-a", overrides: a.map((u, i) => ({ unitId: u, variantKey: before[i % 2].key })) });
    await t.experiments.setOverrides({ experimentKey: "lo-b", overrides: b.map((u) => ({ unitId: u, variantKey: "treatment" })) });

    const all = async (experimentKey: string, pageSize: number) => {
      const got: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const r = await t.experiments.listOverrides({ experimentKey, pageSize, pageToken });
        expect(r.overrides.length).toBeLessThanOrEqual(pageSize);
        for (const o of r.overrides) got.push(`${o.experimentKey}/${o.unitId}=${o.variantKey}`);
        pageToken = r.nextPageToken;
        pages++;
      } while (pageToken !== "");
      return { got, pages };
    };
    const wantA = a.map((u, i) => `lo-a/${u}=${before[i % 2].key}`).sort();
    const pagedA = await all("lo-a", 10);
    expect(pagedA.pages).toBe(3);
    expect([...pagedA.got].sort()).toEqual(wantA);
    expect(new Set(pagedA.got).size).toBe(23);
    const pagedB = await all("lo-b", 7);
    expect(pagedB.got.sort()).toEqual(b.map((u) => `lo-b/${u}=treatment`).sort());
    // Without an experiment: these two among every override of the server.
    const everything = (await all("", 4)).got;
    expect(everything.filter((x) => x.startsWith("lo-"))).toHaveLength(30);
    expect(new Set(everything).size).toBe(everything.length);

    const one = (await t.experiments.listOverrides({ experimentKey: "lo-b" })).overrides[0]!;
    const version = (await t.experiments.getExperiment({ key: "lo-b" })).experiment!.version;
    expect(one.experimentVersion).toBe(version);
    expect(Math.abs(Number(one.setTime!.seconds) * 1000 - Date.now())).toBeLessThan(600_000);

    // Cleared ones are gone from the list.
    await t.experiments.clearOverrides({ experimentKey: "lo-a", unitIds: a.slice(0, 20) });
    expect((await all("lo-a", 1000)).got.sort()).toEqual(
      wantA.filter((x) => !a.slice(0, 20).some((u) => x === `lo-a/${u}=control` || x === `lo-a/${u}=treatment`)),
    );

    await expectFailure(
      t.experiments.listOverrides({ experimentKey: "lo-a", pageToken: "not-a-token" }),
      status.INVALID_ARGUMENT,
      "page_token",
    );
    for (const forged of [
      [1, "\u0000"],
      [-1, "u"],
      [2 ** 40, "u"],
      ["1", "u"],
    ]) {
      const pageToken = Buffer.from(JSON.stringify(forged)).toString("base64url");
      await expectFailure(t.experiments.listOverrides({ pageToken }), status.INVALID_ARGUMENT, "page_token");
    }
    await expectFailure(
      t.experiments.listOverrides({ experimentKey: "lo-a", pageSize: 10_001 }),
      status.INVALID_ARGUMENT,
      "page_size",
      "10000",
    );
    await expectFailure(t.experiments.listOverrides({ experimentKey: "lo-none" }), status.NOT_FOUND, "lo-none");
    await expectFailure(t.experiments.listOverrides({ experimentKey: "Bad Key" }), status.INVALID_ARGUMENT, "experiment_key");
  });

  it("a variant with an override cannot be removed", async () => {
    const e = (
      await t.experiments.createExperiment({
        key: "lo-rm",
        variants: [
          { key: "a", weight: 5000 },
          { key: "b", weight: 5000 },
          { key: "c", weight: 0 },
        ],
      })
    ).experiment!;
    const set = await t.experiments.setOverrides({ experimentKey: "lo-rm", overrides: [{ unitId: "u", variantKey: "c" }] });
    await expectFailure(
      t.experiments.updateExperiment({ key: "lo-rm", version: set.experimentVersion, variants: { variants: e.variants.slice(0, 2) } }),
      status.FAILED_PRECONDITION,
      "c",
    );
    const [{ n }] = await sql<{ n: number }>(t.databaseUrl, `SELECT count(*)::int AS n FROM overrides`);
    expect(n).toBeGreaterThan(0);
  });
});
