/**
 * ExperimentService through a real gRPC client against a real server (PostgreSQL + Redis):
 * every RPC, with assertions on the answers, checked against SPEC.md and the database itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, Source } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import {
  chiSquareOf,
  chiSquarePValueEvenDf,
  expectFailure,
  specSegment,
  specVariant,
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

const ab = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

describe("CreateExperiment / GetExperiment", () => {
  it("applies the documented defaults and GetExperiment returns the same experiment", async () => {
    const before = Date.now();
    const { experiment: e } = await t.experiments.createExperiment({ key: "defaults.x-1", variants: ab });
    expect(e).toBeDefined();
    expect(e!.key).toBe("defaults.x-1");
    expect(e!.salt).toBe("defaults.x-1");
    expect(e!.unitType).toBe("user_id");
    expect(e!.rollout).toBe(10_000);
    expect(e!.status).toBe(ExperimentStatus.DRAFT);
    expect(e!.hashVersion).toBe(1);
    expect(e!.version).toBe(1n);
    expect(e!.defaultVariant).toBe("a");
    expect(e!.winner).toBe("");
    expect(e!.namespace).toBe("");
    expect(e!.segments).toBe(0);
    expect(e!.tags).toEqual([]);
    expect(e!.variants.map((v) => [v.key, v.weight])).toEqual([
      ["a", 5000],
      ["b", 5000],
    ]);
    expect(Number(e!.createTime!.seconds) * 1000).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 60_000);

    const { experiment: g } = await t.experiments.getExperiment({ key: "defaults.x-1" });
    expect(g).toEqual(e);

    // The row in PostgreSQL says the same.
    const [row] = await sql<{ salt: string; unit_type: string; rollout: number; status: number; hash_version: number; version: string }>(
      t.databaseUrl,
      `SELECT salt, unit_type, rollout, status, hash_version, version::text AS version FROM experiments WHERE key = $1`,
      ["defaults.x-1"],
    );
    expect(row).toEqual({
      salt: "defaults.x-1",
      unit_type: "user_id",
      rollout: 10_000,
      status: ExperimentStatus.DRAFT,
      hash_version: 1,
      version: "1",
    });
  });

  it("keeps every explicit field", async () => {
    const { experiment: e } = await t.experiments.createExperiment({
      key: "explicit",
      salt: "explicit-salt ✓",
      unitType: "device_id",
      variants: [
        { key: "Control", weight: 2500, params: { color: "red", size: 3 } },
        { key: "T-1", weight: 7500, params: { color: "blue", nested: { on: true } } },
      ],
      rollout: 1234,
      status: ExperimentStatus.RUNNING,
      defaultVariant: "T-1",
      tags: ["home", "checkout"],
      description: "a description ✓",
    });
    expect(e!.salt).toBe("explicit-salt ✓");
    expect(e!.unitType).toBe("device_id");
    expect(e!.rollout).toBe(1234);
    expect(e!.status).toBe(ExperimentStatus.RUNNING);
    expect(e!.defaultVariant).toBe("T-1");
    expect([...e!.tags].sort()).toEqual(["checkout", "home"]);
    expect(e!.description).toBe("a description ✓");
    expect(e!.variants[0].params).toEqual({ color: "red", size: 3 });
    expect(e!.variants[1].params).toEqual({ color: "blue", nested: { on: true } });
    expect((await t.experiments.getExperiment({ key: "explicit" })).experiment).toEqual(e);
  });

  it("GetExperiment of an unknown key is NOT_FOUND", async () => {
    await expectFailure(t.experiments.getExperiment({ key: "no-such-experiment" }), status.NOT_FOUND);
  });

  it("a duplicate key is ALREADY_EXISTS and changes nothing", async () => {
    await t.experiments.createExperiment({ key: "dup", variants: ab });
    await expectFailure(
      t.experiments.createExperiment({ key: "dup", salt: "another-salt", variants: [{ key: "x", weight: 10_000 }] }),
      status.ALREADY_EXISTS,
      "dup",
    );
    const { experiment } = await t.experiments.getExperiment({ key: "dup" });
    expect(experiment!.variants.map((v) => v.key)).toEqual(["a", "b"]);
    expect(experiment!.version).toBe(1n);
    // The refused salt was not claimed: it can still be used.
    await t.experiments.createExperiment({ key: "dup-2", salt: "another-salt", variants: ab });
  });

  it("a salt reused across experiments and namespaces is ALREADY_EXISTS", async () => {
    await t.experiments.createExperiment({ key: "salty", salt: "shared-salt", variants: ab });
    // experiment ↔ experiment (explicit salt, and a default salt equal to another's salt)
    await expectFailure(
      t.experiments.createExperiment({ key: "salty-2", salt: "shared-salt", variants: ab }),
      status.ALREADY_EXISTS,
      "salt",
    );
    await t.experiments.createExperiment({ key: "salty-3", salt: "salty-4", variants: ab });
    await expectFailure(t.experiments.createExperiment({ key: "salty-4", variants: ab }), status.ALREADY_EXISTS, "salt");
    // experiment ↔ namespace, both directions
    await expectFailure(t.experiments.createNamespace({ key: "ns-salty", salt: "shared-salt" }), status.ALREADY_EXISTS, "salt");
    await t.experiments.createExperiment({ key: "salty-d", variants: ab });
    await expectFailure(t.experiments.createNamespace({ key: "salty-d" }), status.ALREADY_EXISTS, "salt");
    await t.experiments.createNamespace({ key: "ns-salt-owner", salt: "ns-owned-salt" });
    await expectFailure(
      t.experiments.createExperiment({ key: "salty-5", salt: "ns-owned-salt", variants: ab }),
      status.ALREADY_EXISTS,
      "salt",
    );
    await expectFailure(t.experiments.createNamespace({ key: "ns-salty-6", salt: "ns-owned-salt" }), status.ALREADY_EXISTS, "salt");
    // Nothing refused was created.
    for (const key of ["salty-2", "salty-4", "salty-5"]) {
      await expectFailure(t.experiments.getExperiment({ key }), status.NOT_FOUND);
    }
    for (const key of ["ns-salty", "ns-salty-6", "salty-d"]) await expectFailure(t.experiments.getNamespace({ key }), status.NOT_FOUND);
    // Duplicate namespace key.
    await expectFailure(t.experiments.createNamespace({ key: "ns-salt-owner", salt: "fresh-salt-77" }), status.ALREADY_EXISTS);
  });
});

describe("ListExperiments", () => {
  beforeAll(async () => {
    await t.experiments.createNamespace({ key: "list-ns", segments: 100 });
    await t.experiments.createExperiment({ key: "list-c", variants: ab, status: ExperimentStatus.RUNNING, tags: ["page-x"] });
    await t.experiments.createExperiment({ key: "list-a", variants: ab, status: ExperimentStatus.RUNNING, tags: ["page-x", "page-y"] });
    await t.experiments.createExperiment({ key: "list-b", variants: ab, status: ExperimentStatus.PAUSED, tags: ["page-y"] });
    await t.experiments.allocateSegments({ namespaceKey: "list-ns", experimentKey: "list-b", segments: 10 });
    await t.experiments.allocateSegments({ namespaceKey: "list-ns", experimentKey: "list-c", segments: 10 });
  });

  it("lists everything sorted by key, and filters by status, tag and namespace", async () => {
    const all = (await t.experiments.listExperiments({})).experiments.map((e) => e.key);
    expect(all).toEqual([...all].sort());
    expect(all).toEqual(expect.arrayContaining(["list-a", "list-b", "list-c"]));

    const keysOf = async (req: Parameters<typeof t.experiments.listExperiments>[0]) =>
      (await t.experiments.listExperiments(req)).experiments.map((e) => e.key).filter((k) => k.startsWith("list-"));
    expect(await keysOf({ status: ExperimentStatus.RUNNING })).toEqual(["list-a", "list-c"]);
    expect(await keysOf({ status: ExperimentStatus.PAUSED })).toEqual(["list-b"]);
    expect(await keysOf({ tag: "page-x" })).toEqual(["list-a", "list-c"]);
    expect(await keysOf({ tag: "page-y" })).toEqual(["list-a", "list-b"]);
    expect(await keysOf({ namespace: "list-ns" })).toEqual(["list-b", "list-c"]);
    expect(await keysOf({ namespace: "list-ns", status: ExperimentStatus.RUNNING, tag: "page-x" })).toEqual(["list-c"]);
    expect(await keysOf({ tag: "nobody-has-this" })).toEqual([]);

    // Every answer with a filter really satisfies it (not only our experiments).
    for (const e of (await t.experiments.listExperiments({ status: ExperimentStatus.DRAFT })).experiments) {
      expect(e.status).toBe(ExperimentStatus.DRAFT);
    }
    // The namespace filter agrees with the database.
    const rows = await sql<{ key: string }>(
      t.databaseUrl,
      `SELECT e.key FROM experiments e JOIN namespaces n ON n.id = e.namespace_id WHERE n.key = 'list-ns' ORDER BY e.key`,
    );
    expect((await t.experiments.listExperiments({ namespace: "list-ns" })).experiments.map((e) => e.key)).toEqual(rows.map((r) => r.key));
  });
});

describe("UpdateExperiment", () => {
  it("changes weights, rollout, params, default, tags and description, bumping the version each time", async () => {
    const created = (await t.experiments.createExperiment({ key: "upd", variants: ab, tags: ["t1"] })).experiment!;
    let e = (
      await t.experiments.updateExperiment({
        key: "upd",
        version: created.version,
        variants: {
          variants: [
            { key: "a", weight: 1000, params: { p: 1 } },
            { key: "b", weight: 9000 },
          ],
        },
      })
    ).experiment!;
    expect(e.version).toBe(created.version + 1n);
    expect(e.variants.map((v) => [v.key, v.weight])).toEqual([
      ["a", 1000],
      ["b", 9000],
    ]);
    expect(e.variants[0].params).toEqual({ p: 1 });
    // Untouched fields stay.
    expect(e.rollout).toBe(10_000);
    expect(e.tags).toEqual(["t1"]);
    expect(e.salt).toBe("upd");

    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, rollout: 2500 })).experiment!;
    expect(e.rollout).toBe(2500);
    expect(e.version).toBe(created.version + 2n);
    expect(e.variants.map((v) => v.weight)).toEqual([1000, 9000]);

    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, defaultVariant: "b" })).experiment!;
    expect(e.defaultVariant).toBe("b");
    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, tags: { tags: ["t2", "t3"] } })).experiment!;
    expect([...e.tags].sort()).toEqual(["t2", "t3"]);
    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, tags: { tags: [] } })).experiment!;
    expect(e.tags).toEqual([]);
    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, description: "now described" })).experiment!;
    expect(e.description).toBe("now described");
    e = (await t.experiments.updateExperiment({ key: "upd", version: e.version, defaultVariant: "" })).experiment!;
    expect(e.defaultVariant).toBe("a"); // cleared: the first variant
    expect(e.version).toBe(created.version + 7n);

    // Never changed by updates: key, salt, unit type, hash version.
    expect([e.key, e.salt, e.unitType, e.hashVersion]).toEqual(["upd", "upd", "user_id", 1]);
    expect((await t.experiments.getExperiment({ key: "upd" })).experiment).toEqual(e);
  });

  it("a stale version is ABORTED and changes nothing", async () => {
    const e = (await t.experiments.createExperiment({ key: "stale", variants: ab })).experiment!;
    await t.experiments.updateExperiment({ key: "stale", version: e.version, rollout: 100 });
    await expectFailure(t.experiments.updateExperiment({ key: "stale", version: e.version, rollout: 9000 }), status.ABORTED, "version");
    await expectFailure(t.experiments.updateExperiment({ key: "stale", version: e.version + 5n, rollout: 9000 }), status.ABORTED);
    const now = (await t.experiments.getExperiment({ key: "stale" })).experiment!;
    expect(now.rollout).toBe(100);
    expect(now.version).toBe(e.version + 1n);
  });

  it("status transitions and the winner, each with the answers Assign gives", async () => {
    const variants = [
      { key: "ctl", weight: 5000 },
      { key: "trt", weight: 5000 },
    ];
    let e = (await t.experiments.createExperiment({ key: "life", variants, defaultVariant: "trt" })).experiment!;
    const ask = async (unitId: string) => (await t.assignments.assign({ experimentKey: "life", unitId })).assignment!;

    // DRAFT: default variant, NOT_RUNNING, nothing stored.
    let a = await ask("life-u1");
    expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual(["trt", Reason.NOT_RUNNING, false, false]);

    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, status: ExperimentStatus.RUNNING })).experiment!;
    expect(e.status).toBe(ExperimentStatus.RUNNING);
    a = await ask("life-u1");
    expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual([specVariant("life-u1", "life", variants), Reason.NEW, true, true]);
    expect(a.experimentVersion).toBe(e.version);

    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, status: ExperimentStatus.PAUSED })).experiment!;
    expect(e.status).toBe(ExperimentStatus.PAUSED);
    a = await ask("life-u1");
    expect([a.variantKey, a.reason, a.enrolled]).toEqual([specVariant("life-u1", "life", variants), Reason.STICKY, true]);
    a = await ask("life-u2");
    expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual(["trt", Reason.PAUSED, false, false]);

    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, status: ExperimentStatus.RUNNING })).experiment!;
    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, status: ExperimentStatus.STOPPED })).experiment!;
    expect(e.status).toBe(ExperimentStatus.STOPPED);
    a = await ask("life-u1");
    expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual(["trt", Reason.NOT_RUNNING, false, false]);

    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, winner: "ctl" })).experiment!;
    expect(e.winner).toBe("ctl");
    for (const u of ["life-u1", "life-u2", "life-u3"]) {
      a = await ask(u);
      expect([a.variantKey, a.reason, a.enrolled, a.stored]).toEqual(["ctl", Reason.WINNER, false, false]);
    }
    await expectFailure(
      t.experiments.updateExperiment({ key: "life", version: e.version, winner: "nope" }),
      status.INVALID_ARGUMENT,
      "winner",
    );
    e = (await t.experiments.updateExperiment({ key: "life", version: e.version, winner: "" })).experiment!;
    expect(e.winner).toBe("");
    a = await ask("life-u1");
    expect(a.reason).toBe(Reason.NOT_RUNNING);

    // Only the one unit enrolled while running is stored, by hashing.
    const stored = await storedAssignments(t.databaseUrl, "life");
    expect([...stored.keys()]).toEqual(["life-u1"]);
    expect(stored.get("life-u1")!.source).toBe(Source.HASH);
  });

  it("appends variants, refuses to remove one with stored assignments, allows removing one without", async () => {
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
      { key: "c", weight: 0 },
    ];
    let e = (await t.experiments.createExperiment({ key: "shape", variants, status: ExperimentStatus.RUNNING })).experiment!;
    const ids = units("shape-", 200);
    const before = await t.assignments.bulkAssign({ experimentKey: "shape", unitIds: ids });
    expect(new Set(before.column!.variantIndexes.map((i) => before.column!.legend[i]))).toEqual(new Set(["a", "b"]));

    // Removing c (no stored assignment) is allowed; appending d too.
    e = (
      await t.experiments.updateExperiment({
        key: "shape",
        version: e.version,
        variants: {
          variants: [
            { key: "a", weight: 4000 },
            { key: "b", weight: 4000 },
            { key: "d", weight: 2000 },
          ],
        },
      })
    ).experiment!;
    expect(e.variants.map((v) => [v.key, v.weight])).toEqual([
      ["a", 4000],
      ["b", 4000],
      ["d", 2000],
    ]);
    // Removing b (stored assignments use it) is refused, and nothing changes.
    await expectFailure(
      t.experiments.updateExperiment({
        key: "shape",
        version: e.version,
        variants: {
          variants: [
            { key: "a", weight: 5000 },
            { key: "d", weight: 5000 },
          ],
        },
      }),
      status.FAILED_PRECONDITION,
      "b",
    );
    expect((await t.experiments.getExperiment({ key: "shape" })).experiment).toEqual(e);
    // Reordering existing variants is not an append.
    await expectFailure(
      t.experiments.updateExperiment({
        key: "shape",
        version: e.version,
        variants: {
          variants: [
            { key: "b", weight: 5000 },
            { key: "a", weight: 5000 },
            { key: "d", weight: 0 },
          ],
        },
      }),
      status.INVALID_ARGUMENT,
      "variants",
    );

    // Stored units kept their variants; new units follow the new list, including d.
    const after = await t.assignments.bulkAssign({ experimentKey: "shape", unitIds: ids });
    ids.forEach((_u, i) => {
      expect(after.column!.legend[after.column!.variantIndexes[i]]).toBe(before.column!.legend[before.column!.variantIndexes[i]]);
      expect(after.column!.reasons[i]).toBe(Reason.STICKY);
    });
    const fresh = units("shape-new-", 300);
    const col = (await t.assignments.bulkAssign({ experimentKey: "shape", unitIds: fresh })).column!;
    fresh.forEach((u, i) => expect(col.legend[col.variantIndexes[i]]).toBe(specVariant(u, "shape", e.variants)));
    expect(fresh.some((_, i) => col.legend[col.variantIndexes[i]] === "d")).toBe(true);
  });
});

describe("namespaces and segments", () => {
  it("CreateNamespace defaults, GetNamespace and ListNamespaces", async () => {
    const { namespace: n } = await t.experiments.createNamespace({ key: "ns-defaults" });
    expect([n!.key, n!.salt, n!.unitType, n!.segments, n!.freeSegments]).toEqual(["ns-defaults", "ns-defaults", "user_id", 10_000, 10_000]);
    expect(n!.allocations).toEqual([]);
    expect(n!.createTime).toBeDefined();
    const { namespace: n2 } = await t.experiments.createNamespace({
      key: "ns-explicit",
      salt: "ns explicit salt",
      unitType: "device_id",
      segments: 7,
    });
    expect([n2!.salt, n2!.unitType, n2!.segments, n2!.freeSegments]).toEqual(["ns explicit salt", "device_id", 7, 7]);
    expect((await t.experiments.getNamespace({ key: "ns-explicit" })).namespace).toEqual(n2);
    const listed = (await t.experiments.listNamespaces({})).namespaces;
    expect(listed.map((x) => x.key)).toEqual(expect.arrayContaining(["ns-defaults", "ns-explicit"]));
    expect(listed.find((x) => x.key === "ns-defaults")).toEqual(n);
    await expectFailure(t.experiments.getNamespace({ key: "ns-missing" }), status.NOT_FOUND, /^key: /);
  });

  it("AllocateSegments spreads the segments, stores them, and makes the experiments exclusive", async () => {
    await t.experiments.createNamespace({ key: "ns-alloc", salt: "ns-alloc-salt", segments: 10_000 });
    const variants = [
      { key: "x", weight: 5000 },
      { key: "y", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "nsa", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "nsb", variants, status: ExperimentStatus.RUNNING });
    const r1 = await t.experiments.allocateSegments({ namespaceKey: "ns-alloc", experimentKey: "nsa", segments: 2000 });
    expect(r1.experiment!.namespace).toBe("ns-alloc");
    expect(r1.experiment!.segments).toBe(2000);
    expect(r1.experiment!.version).toBe(2n);
    expect(r1.namespace!.freeSegments).toBe(8000);
    const r2 = await t.experiments.allocateSegments({ namespaceKey: "ns-alloc", experimentKey: "nsb", segments: 3000 });
    expect(r2.namespace!.freeSegments).toBe(5000);
    expect(r2.namespace!.allocations.map((x) => [x.experimentKey, x.segments])).toEqual([
      ["nsa", 2000],
      ["nsb", 3000],
    ]);
    // More for the same experiment adds to its share.
    const r3 = await t.experiments.allocateSegments({ namespaceKey: "ns-alloc", experimentKey: "nsa", segments: 500 });
    expect(r3.experiment!.segments).toBe(2500);
    expect(r3.namespace!.freeSegments).toBe(4500);

    const owned = async () => {
      const rows = await sql<{ segment: number; key: string }>(
        t.databaseUrl,
        `SELECT s.segment, e.key FROM namespace_segments s JOIN experiments e ON e.id = s.experiment_id
           JOIN namespaces n ON n.id = s.namespace_id WHERE n.key = 'ns-alloc'`,
      );
      return new Map(rows.map((r) => [r.segment, r.key]));
    };
    const segs = await owned();
    const of = (k: string) => [...segs].filter(([, e]) => e === k).map(([s]) => s);
    expect(of("nsa").length).toBe(2500);
    expect(of("nsb").length).toBe(3000);
    // Spread: every tenth of the segment space holds a fair share of each experiment's segments
    // (contiguous blocks would put them all in one or two tenths).
    for (const k of ["nsa", "nsb"]) {
      const perTenth = new Array(10).fill(0);
      for (const s of of(k)) perTenth[Math.floor(s / 1000)]++;
      const mean = of(k).length / 10;
      for (const c of perTenth) expect(c, `${k}: ${perTenth}`).toBeGreaterThan(mean * 0.6);
    }

    // Assignments follow the stored segments: H(unit:nsSalt) % segments decides, and a unit is
    // in at most one experiment of the namespace.
    const ids = units("ns-unit-", 3000);
    const [ca, cb] = (await t.assignments.matrixAssign({ experimentKeys: ["nsa", "nsb"], unitIds: ids, options: { explain: true } }))
      .columns;
    let inA = 0;
    let inB = 0;
    ids.forEach((u, i) => {
      const seg = specSegment(u, "ns-alloc-salt", 10_000);
      expect(ca.explanations[i].segment).toBe(seg);
      const owner = segs.get(seg);
      const expectA = owner === "nsa" ? Reason.NEW : Reason.NOT_IN_NAMESPACE;
      const expectB = owner === "nsb" ? Reason.NEW : Reason.NOT_IN_NAMESPACE;
      expect(ca.reasons[i]).toBe(expectA);
      expect(cb.reasons[i]).toBe(expectB);
      expect(ca.enrolled[i] && cb.enrolled[i]).toBe(false);
      if (expectA === Reason.NEW) {
        inA++;
        expect(ca.legend[ca.variantIndexes[i]]).toBe(specVariant(u, "nsa", variants));
      } else expect(ca.legend[ca.variantIndexes[i]]).toBe("x"); // default variant
      if (expectB === Reason.NEW) inB++;
    });
    expect(inA).toBeGreaterThan(0);
    expect(inB).toBeGreaterThan(0);

    // Not while nsa has stored units and is not STOPPED (SPEC.md "Namespaces"): they answer STICKY
    // before the namespace rule, so another experiment taking their segments would enrol them too.
    // FAILED_PRECONDITION saying why, and nothing is freed.
    let nsa = (await t.experiments.getExperiment({ key: "nsa" })).experiment!;
    for (const s of [ExperimentStatus.RUNNING, ExperimentStatus.PAUSED]) {
      if (nsa.status !== s) nsa = (await t.experiments.updateExperiment({ key: "nsa", version: nsa.version, status: s })).experiment!;
      const f = await expectFailure(
        t.experiments.releaseSegments({ namespaceKey: "ns-alloc", experimentKey: "nsa" }),
        status.FAILED_PRECONDITION,
        "experiment_key",
        ExperimentStatus[s],
        "stored assignments",
        "stop it",
      );
      expect(f.details).toMatch(/exclusive/);
      expect(await owned()).toEqual(segs);
      expect((await t.experiments.getExperiment({ key: "nsa" })).experiment!.version).toBe(nsa.version);
    }
    nsa = (await t.experiments.updateExperiment({ key: "nsa", version: nsa.version, status: ExperimentStatus.STOPPED })).experiment!;

    // Stopped: releasing it moves nothing of the other.
    const rel = await t.experiments.releaseSegments({ namespaceKey: "ns-alloc", experimentKey: "nsa" });
    expect(rel.released).toBe(2500);
    expect(rel.experiment!.segments).toBe(0);
    expect(rel.experiment!.namespace).toBe("ns-alloc");
    expect(rel.namespace!.freeSegments).toBe(7000);
    const afterRelease = await owned();
    expect([...afterRelease].filter(([, e]) => e === "nsa")).toEqual([]);
    expect(
      [...afterRelease]
        .filter(([, e]) => e === "nsb")
        .map(([s]) => s)
        .sort((a, b) => a - b),
    ).toEqual(of("nsb").sort((a, b) => a - b));

    // After the release: nsa (stopped) answers everyone its default, NOT_RUNNING; its stored
    // units stay stored.
    const again = (await t.assignments.bulkAssign({ experimentKey: "nsa", unitIds: ids })).column!;
    expect(new Set(again.reasons)).toEqual(new Set([Reason.NOT_RUNNING]));
    expect((await storedAssignments(t.databaseUrl, "nsa")).size).toBe(inA);

    // Another experiment now gets segments that are free again, without moving nsb's.
    await t.experiments.createExperiment({ key: "nsc", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.allocateSegments({ namespaceKey: "ns-alloc", experimentKey: "nsc", segments: 7000 });
    const full = await owned();
    expect(full.size).toBe(10_000);
    for (const s of of("nsb")) expect(full.get(s)).toBe("nsb");
  });

  it("ReleaseSegments of an experiment with nothing stored works in any status", async () => {
    await t.experiments.createNamespace({ key: "ns-empty", segments: 100 });
    const ab = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "ns-empty-draft", variants: ab });
    await t.experiments.createExperiment({ key: "ns-empty-run", variants: ab, status: ExperimentStatus.RUNNING });
    for (const key of ["ns-empty-draft", "ns-empty-run"]) {
      await t.experiments.allocateSegments({ namespaceKey: "ns-empty", experimentKey: key, segments: 10 });
      const r = await t.experiments.releaseSegments({ namespaceKey: "ns-empty", experimentKey: key });
      expect([key, r.released, r.experiment!.segments]).toEqual([key, 10, 0]);
    }
    expect((await t.experiments.getNamespace({ key: "ns-empty" })).namespace!.freeSegments).toBe(100);
  });

  it("RESOURCE_EXHAUSTED allocates nothing; unit-type mismatch and another namespace are FAILED_PRECONDITION", async () => {
    await t.experiments.createNamespace({ key: "ns-small", segments: 100 });
    await t.experiments.createNamespace({ key: "ns-other", segments: 100 });
    await t.experiments.createExperiment({ key: "small-a", variants: ab });
    await t.experiments.createExperiment({ key: "small-b", variants: ab });
    await t.experiments.createExperiment({ key: "small-dev", unitType: "device_id", variants: ab });
    await t.experiments.allocateSegments({ namespaceKey: "ns-small", experimentKey: "small-a", segments: 60 });

    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "ns-small", experimentKey: "small-b", segments: 41 }),
      status.RESOURCE_EXHAUSTED,
      "segments",
    );
    const b = (await t.experiments.getExperiment({ key: "small-b" })).experiment!;
    expect([b.namespace, b.segments, b.version]).toEqual(["", 0, 1n]);
    const n = (await t.experiments.getNamespace({ key: "ns-small" })).namespace!;
    expect(n.freeSegments).toBe(40);
    expect(n.allocations.map((x) => [x.experimentKey, x.segments])).toEqual([["small-a", 60]]);
    // Exactly the free ones is fine.
    const ok = await t.experiments.allocateSegments({ namespaceKey: "ns-small", experimentKey: "small-b", segments: 40 });
    expect(ok.namespace!.freeSegments).toBe(0);

    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "ns-other", experimentKey: "small-dev", segments: 1 }),
      status.FAILED_PRECONDITION,
      "unit type",
    );
    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "ns-other", experimentKey: "small-a", segments: 1 }),
      status.FAILED_PRECONDITION,
      "ns-small",
    );
    expect((await t.experiments.getNamespace({ key: "ns-other" })).namespace!.freeSegments).toBe(100);
    expect((await t.experiments.getExperiment({ key: "small-dev" })).experiment!.namespace).toBe("");
    await expectFailure(t.experiments.releaseSegments({ namespaceKey: "ns-other", experimentKey: "small-a" }), status.FAILED_PRECONDITION);
    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "ns-small", experimentKey: "small-a", segments: 0 }),
      status.INVALID_ARGUMENT,
      "segments",
    );
  });
});

describe("overrides", () => {
  it("SetOverrides takes many units per call, works in DRAFT, and ClearOverrides undoes it", async () => {
    const variants = [
      { key: "off", weight: 5000 },
      { key: "on", weight: 5000 },
    ];
    let e = (await t.experiments.createExperiment({ key: "ovr", variants })).experiment!;
    const testers = units("tester-", 250);
    const set = await t.experiments.setOverrides({
      experimentKey: "ovr",
      overrides: testers.map((u, i) => ({ unitId: u, variantKey: i % 2 ? "on" : "off" })),
    });
    expect(set.count).toBe(250);
    expect(set.experimentVersion).toBe(e.version + 1n);
    e = (await t.experiments.getExperiment({ key: "ovr" })).experiment!;
    expect(e.version).toBe(set.experimentVersion);

    // DRAFT: testers get their override, everyone else the default.
    const col = (await t.assignments.bulkAssign({ experimentKey: "ovr", unitIds: [...testers, "not-a-tester"] })).column!;
    testers.forEach((_, i) => {
      expect(col.legend[col.variantIndexes[i]]).toBe(i % 2 ? "on" : "off");
      expect(col.reasons[i]).toBe(Reason.OVERRIDE);
      expect(col.enrolled[i]).toBe(true);
      expect(col.stored[i]).toBe(true);
    });
    expect([col.legend[col.variantIndexes[250]], col.reasons[250], col.stored[250]]).toEqual(["off", Reason.NOT_RUNNING, false]);

    // Overrides are kept apart from stored assignments: nothing is stored for the testers.
    expect((await storedAssignments(t.databaseUrl, "ovr")).size).toBe(0);
    const listed = (await t.experiments.listOverrides({ experimentKey: "ovr", pageSize: 10_000 })).overrides;
    expect(new Map(listed.map((o) => [o.unitId, o.variantKey]))).toEqual(new Map(testers.map((u, i) => [u, i % 2 ? "on" : "off"])));

    // Overriding again replaces (upsert), in the same call for many units.
    await t.experiments.setOverrides({
      experimentKey: "ovr",
      overrides: testers.slice(0, 10).map((u) => ({ unitId: u, variantKey: "on" })),
    });
    const a0 = (await t.assignments.assign({ experimentKey: "ovr", unitId: testers[0] })).assignment!;
    expect([a0.variantKey, a0.reason]).toEqual(["on", Reason.OVERRIDE]);

    // Unknown variant, repeated unit: INVALID_ARGUMENT naming the item.
    await expectFailure(
      t.experiments.setOverrides({ experimentKey: "ovr", overrides: [{ unitId: "x", variantKey: "nope" }] }),
      status.INVALID_ARGUMENT,
      "overrides[0].variant_key",
    );
    await expectFailure(
      t.experiments.setOverrides({
        experimentKey: "ovr",
        overrides: [
          { unitId: "x", variantKey: "on" },
          { unitId: "x", variantKey: "off" },
        ],
      }),
      status.INVALID_ARGUMENT,
      "overrides[1].unit_id",
    );

    // Clear some units: they are evaluated normally again (DRAFT: default).
    const cleared = await t.experiments.clearOverrides({ experimentKey: "ovr", unitIds: testers.slice(0, 100) });
    expect(cleared.count).toBe(100);
    const afterClear = (await t.assignments.bulkAssign({ experimentKey: "ovr", unitIds: testers })).column!;
    testers.forEach((_, i) => expect(afterClear.reasons[i]).toBe(i < 100 ? Reason.NOT_RUNNING : Reason.OVERRIDE));
    // Clear all.
    const all = await t.experiments.clearOverrides({ experimentKey: "ovr", all: true });
    expect(all.count).toBe(150);
    expect((await storedAssignments(t.databaseUrl, "ovr")).size).toBe(0);
    const none = (await t.assignments.bulkAssign({ experimentKey: "ovr", unitIds: testers })).column!;
    expect(new Set(none.reasons)).toEqual(new Set([Reason.NOT_RUNNING]));
  });
});

describe("GetExperimentStats", () => {
  it("counts hashed units per variant (overrides excluded) and reports chi-square and its p-value", async () => {
    const variants = [
      { key: "a", weight: 2000 },
      { key: "b", weight: 3000 },
      { key: "c", weight: 5000 },
      { key: "z", weight: 0 },
    ];
    let e = (await t.experiments.createExperiment({ key: "stats", variants, status: ExperimentStatus.RUNNING })).experiment!;
    const empty = await t.experiments.getExperimentStats({ key: "stats" });
    expect(empty.totalUnits).toBe(0n);
    expect(empty.pValue).toBe(1);
    expect(empty.sampleRatioMismatch).toBe(false);

    const ids = units("stats-u", 3000);
    await t.assignments.bulkAssign({ experimentKey: "stats", unitIds: ids });
    // Dry runs and NOT_RUNNING answers count for nothing.
    await t.assignments.bulkAssign({ experimentKey: "stats", unitIds: units("stats-dry", 500), options: { dryRun: true } });
    // Overrides: 40 units never hashed, and one unit that had been hashed before. Overrides are
    // kept apart: that unit's row stored by hashing stays, and still counts for the split.
    const overridden = units("stats-ovr", 40);
    await t.experiments.setOverrides({
      experimentKey: "stats",
      overrides: [...overridden.map((u) => ({ unitId: u, variantKey: "z" })), { unitId: ids[0], variantKey: "z" }],
    });

    const hashedUnits = ids;
    const expected = variants.map((v) => hashedUnits.filter((u) => specVariant(u, "stats", variants) === v.key).length);
    const s = await t.experiments.getExperimentStats({ key: "stats" });
    e = (await t.experiments.getExperiment({ key: "stats" })).experiment!;
    expect(s.experimentKey).toBe("stats");
    expect(s.experimentVersion).toBe(e.version);
    expect(s.variants.map((v) => v.variantKey)).toEqual(["a", "b", "c", "z"]);
    expect(s.variants.map((v) => Number(v.units))).toEqual(expected);
    expect(s.variants.map((v) => Number(v.overrides))).toEqual([0, 0, 0, 41]);
    expect(s.variants.map((v) => Number(v.imported))).toEqual([0, 0, 0, 0]);
    expect(s.variants.map((v) => v.expectedShare)).toEqual([0.2, 0.3, 0.5, 0]);
    s.variants.forEach((v, i) => expect(v.observedShare).toBeCloseTo(expected[i] / 3000, 12));
    expect(s.totalUnits).toBe(3000n);
    // The same counts straight from PostgreSQL.
    const rows = await sql<{ variant: string; n: number }>(
      t.databaseUrl,
      `SELECT variant::int AS variant, count(*)::int AS n FROM assignments a JOIN experiments e ON e.id = a.experiment_id
        WHERE e.key = 'stats' AND a.source = ${Source.HASH} GROUP BY variant ORDER BY variant`,
    );
    expect(rows.reduce((acc, r) => acc + r.n, 0)).toBe(3000);

    const { chi, df } = chiSquareOf(
      expected,
      variants.map((v) => v.weight),
    );
    expect(df).toBe(2);
    expect(s.degreesOfFreedom).toBe(2);
    expect(s.chiSquare).toBeCloseTo(chi, 9);
    const p = chiSquarePValueEvenDf(chi, 2);
    expect(s.pValue).toBeCloseTo(p, 9);
    expect(s.sampleRatioMismatch).toBe(p < 0.001);

    // Weights change: the stored units stay where they are, so their ratio no longer matches
    // the new weights and the check flags it.
    const newWeights = [
      { key: "a", weight: 500 },
      { key: "b", weight: 500 },
      { key: "c", weight: 9000 },
      { key: "z", weight: 0 },
    ];
    await t.experiments.updateExperiment({ key: "stats", version: e.version, variants: { variants: newWeights } });
    const s2 = await t.experiments.getExperimentStats({ key: "stats" });
    expect(s2.variants.map((v) => Number(v.units))).toEqual(expected);
    const srm = chiSquareOf(
      expected,
      newWeights.map((v) => v.weight),
    );
    expect(s2.chiSquare).toBeCloseTo(srm.chi, 6);
    const p2 = chiSquarePValueEvenDf(srm.chi, 2);
    expect(p2).toBeLessThan(0.001);
    expect(Math.abs(s2.pValue - p2)).toBeLessThan(1e-12);
    expect(s2.sampleRatioMismatch).toBe(true);
  });

  it("stats of an unknown experiment is NOT_FOUND", async () => {
    await expectFailure(t.experiments.getExperimentStats({ key: "no-stats" }), status.NOT_FOUND);
  });
});
