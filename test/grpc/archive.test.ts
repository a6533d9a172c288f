/**
 * Archiving experiments and namespaces (README "Archiving"): an archived experiment answers
 * UNKNOWN_EXPERIMENT on every assignment path (SPEC.md rule 1), is hidden from lists unless asked
 * for, and changes no more; only a DRAFT or STOPPED experiment is archived. Keys and salts stay
 * taken forever. Unarchiving serves it again exactly as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { columnAnswers, ExperimentStatus, Reason, Source } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, status, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const variants = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

/** Every assignment path's reasons for `ids` in `key`. */
async function reasons(key: string, ids: string[]): Promise<Record<string, Reason[]>> {
  const single: Reason[] = [];
  for (const u of ids) single.push((await t.assignments.assign({ experimentKey: key, unitId: u })).assignment!.reason);
  const unit: Reason[] = [];
  for (const u of ids) {
    const r = await t.assignments.assignUnit({ units: { user_id: u }, experimentKeys: [key] });
    unit.push(r.assignments[0]!.reason);
  }
  const bulk = columnAnswers((await t.assignments.bulkAssign({ experimentKey: key, unitIds: ids })).column!).map((a) => a.reason);
  const matrix = columnAnswers((await t.assignments.matrixAssign({ experimentKeys: [key], unitIds: ids })).columns[0]!).map(
    (a) => a.reason,
  );
  const stream: Reason[] = [];
  for await (const r of t.assignments.streamAssign(
    (async function* () {
      yield { setup: { experimentKeys: [key] } };
      yield { unitIds: ids };
    })(),
  ))
    stream.push(...columnAnswers(r.columns[0]!).map((a) => a.reason));
  return { single, unit, bulk, matrix, stream };
}

describe("archiving an experiment", () => {
  it("only once it is DRAFT or STOPPED; then UNKNOWN_EXPERIMENT everywhere, hidden, frozen; unarchived as it was", async () => {
    let e = (await t.experiments.createExperiment({ key: "arch", salt: "arch-salt", variants, status: ExperimentStatus.RUNNING }))
      .experiment!;
    const ids = units("ar-", 20);
    await t.assignments.bulkAssign({ experimentKey: "arch", unitIds: ids });
    await t.experiments.setOverrides({ experimentKey: "arch", overrides: [{ unitId: ids[0], variantKey: "b" }] });
    e = (await t.experiments.getExperiment({ key: "arch" })).experiment!;

    // RUNNING and PAUSED still answer their units: refused, nothing changes.
    for (const s of [ExperimentStatus.RUNNING, ExperimentStatus.PAUSED]) {
      if (e.status !== s) e = (await t.experiments.updateExperiment({ key: "arch", version: e.version, status: s })).experiment!;
      await expectFailure(t.experiments.archiveExperiment({ key: "arch" }), status.FAILED_PRECONDITION, "key", ExperimentStatus[s], "stop");
      const now = (await t.experiments.getExperiment({ key: "arch" })).experiment!;
      expect([now.archived, now.version]).toEqual([false, e.version]);
    }
    e = (await t.experiments.updateExperiment({ key: "arch", version: e.version, status: ExperimentStatus.STOPPED })).experiment!;
    const archived = (await t.experiments.archiveExperiment({ key: "arch" })).experiment!;
    expect(archived.archived).toBe(true);
    expect(archived.archiveTime).toBeDefined();
    expect(archived.version).toBe(e.version + 1n);
    // Again: nothing changes.
    expect((await t.experiments.archiveExperiment({ key: "arch" })).experiment!.version).toBe(archived.version);

    // Every assignment path: UNKNOWN_EXPERIMENT, for stored, overridden and new units alike.
    const probe = [ids[0], ids[1], "ar-new"];
    for (const [path, got] of Object.entries(await reasons("arch", probe))) {
      expect(got, path).toEqual([Reason.UNKNOWN_EXPERIMENT, Reason.UNKNOWN_EXPERIMENT, Reason.UNKNOWN_EXPERIMENT]);
    }

    // Lists leave it out unless asked; Get, stats and exports still read it.
    expect((await t.experiments.listExperiments({})).experiments.map((x) => x.key)).not.toContain("arch");
    const all = (await t.experiments.listExperiments({ includeArchived: true })).experiments;
    expect(all.find((x) => x.key === "arch")?.archived).toBe(true);
    expect((await t.experiments.getExperiment({ key: "arch" })).experiment!.archived).toBe(true);
    const stats = await t.experiments.getExperimentStats({ key: "arch" });
    expect(stats.totalUnits).toBe(20n);
    let exported = 0;
    for await (const b of t.experiments.exportAssignments({ experimentKey: "arch" })) exported += b.unitIds.length;
    expect(exported).toBe(20);

    // Frozen: no change until unarchived.
    // One call at a time: a refusal not yet awaited would be an unhandled rejection.
    for (const call of [
      () => t.experiments.updateExperiment({ key: "arch", version: archived.version, description: "x" }),
      () => t.experiments.setOverrides({ experimentKey: "arch", overrides: [{ unitId: "x", variantKey: "a" }] }),
      () => t.experiments.clearOverrides({ experimentKey: "arch", all: true }),
    ]) {
      await expectFailure(call(), status.FAILED_PRECONDITION, "archived", "unarchive");
    }
    await t.experiments.createExperiment({ key: "arch-copy", variants, status: ExperimentStatus.RUNNING });
    await expectFailure(
      t.experiments
        .copyAssignments({ sourceExperimentKey: "arch-copy", targetExperimentKey: "arch", variantMapping: { a: "a" } })
        [Symbol.asyncIterator]()
        .next(),
      status.FAILED_PRECONDITION,
      "target_experiment_key",
      "archived",
    );

    // Key and salt stay taken forever, and the refusal says it is archived.
    await expectFailure(t.experiments.createExperiment({ key: "arch", variants }), status.ALREADY_EXISTS, "key", "archived");
    await expectFailure(
      t.experiments.createExperiment({ key: "arch-2", salt: "arch-salt", variants }),
      status.ALREADY_EXISTS,
      "salt",
      "experiment:arch",
      "archived",
    );
    await expectFailure(t.experiments.createNamespace({ key: "arch-ns", salt: "arch-salt" }), status.ALREADY_EXISTS, "salt", "archived");

    // Unarchived: served exactly as it was (STOPPED; the override and stored rows intact).
    const back = (await t.experiments.unarchiveExperiment({ key: "arch" })).experiment!;
    expect([back.archived, back.archiveTime, back.status]).toEqual([false, undefined, ExperimentStatus.STOPPED]);
    const r = await reasons("arch", probe);
    expect(r.bulk).toEqual([Reason.OVERRIDE, Reason.NOT_RUNNING, Reason.NOT_RUNNING]);
    await t.experiments.updateExperiment({ key: "arch", version: back.version, status: ExperimentStatus.RUNNING });
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "arch", unitIds: ids })).column!);
    expect(col[0].reason).toBe(Reason.OVERRIDE);
    ids
      .slice(1)
      .forEach((u, i) =>
        expect([col[i + 1].variantKey, col[i + 1].reason]).toEqual([specVariant(u, "arch-salt", variants), Reason.STICKY]),
      );
    const stored = await storedAssignments(t.databaseUrl, "arch");
    expect([...stored.values()].every((s) => s.source === Source.HASH)).toBe(true);
    expect(stored.size).toBe(20);
  });

  it("a DRAFT experiment is archived at once; unknown keys are NOT_FOUND, bad ones INVALID_ARGUMENT", async () => {
    await t.experiments.createExperiment({ key: "arch-draft", variants });
    expect((await t.experiments.archiveExperiment({ key: "arch-draft" })).experiment!.archived).toBe(true);
    expect((await t.assignments.assign({ experimentKey: "arch-draft", unitId: "u" })).assignment!.reason).toBe(Reason.UNKNOWN_EXPERIMENT);
    await expectFailure(t.experiments.archiveExperiment({ key: "arch-none" }), status.NOT_FOUND, "arch-none");
    await expectFailure(t.experiments.unarchiveExperiment({ key: "Bad Key" }), status.INVALID_ARGUMENT, "key");
  });
});

describe("archiving a namespace", () => {
  it("only once its experiments are archived; hidden, takes no allocation; key and salt stay taken", async () => {
    await t.experiments.createNamespace({ key: "arch-space", segments: 100 });
    await t.experiments.createExperiment({ key: "arch-in-ns", variants });
    await t.experiments.allocateSegments({ namespaceKey: "arch-space", experimentKey: "arch-in-ns", segments: 10 });
    await expectFailure(t.experiments.archiveNamespace({ key: "arch-space" }), status.FAILED_PRECONDITION, "arch-in-ns", "archive them");
    expect((await t.experiments.getNamespace({ key: "arch-space" })).namespace!.archived).toBe(false);

    await t.experiments.archiveExperiment({ key: "arch-in-ns" });
    const ns = (await t.experiments.archiveNamespace({ key: "arch-space" })).namespace!;
    expect([ns.archived, ns.archiveTime !== undefined]).toEqual([true, true]);
    expect((await t.experiments.listNamespaces({})).namespaces.map((n) => n.key)).not.toContain("arch-space");
    expect((await t.experiments.listNamespaces({ includeArchived: true })).namespaces.find((n) => n.key === "arch-space")?.archived).toBe(
      true,
    );

    await t.experiments.createExperiment({ key: "arch-late", variants });
    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "arch-space", experimentKey: "arch-late", segments: 1 }),
      status.FAILED_PRECONDITION,
      "namespace_key",
      "archived",
    );
    await expectFailure(t.experiments.unarchiveExperiment({ key: "arch-in-ns" }), status.FAILED_PRECONDITION, "arch-space", "archived");
    await expectFailure(t.experiments.createNamespace({ key: "arch-space" }), status.ALREADY_EXISTS, "key", "archived");
    await expectFailure(
      t.experiments.createExperiment({ key: "arch-x", salt: "arch-space", variants }),
      status.ALREADY_EXISTS,
      "salt",
      "archived",
    );
    // An archived experiment may still give its segments back.
    expect((await t.experiments.releaseSegments({ namespaceKey: "arch-space", experimentKey: "arch-in-ns" })).released).toBe(10);

    // Unarchived: allocations again, and its experiment may come back.
    expect((await t.experiments.unarchiveNamespace({ key: "arch-space" })).namespace!.archived).toBe(false);
    await t.experiments.allocateSegments({ namespaceKey: "arch-space", experimentKey: "arch-late", segments: 5 });
    expect((await t.experiments.unarchiveExperiment({ key: "arch-in-ns" })).experiment!.archived).toBe(false);
  });
});
