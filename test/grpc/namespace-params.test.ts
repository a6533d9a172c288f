/**
 * Namespace parameters (SPEC.md "Namespaces"): default params stored with a namespace, changed by
 * UpdateNamespace (audited), and ResolveParams / BulkResolveParams through a real gRPC client
 * against real PostgreSQL and Redis. Expected answers come from SPEC's formulas (helpers.ts) and
 * from spec/vectors/rules-v1.json's params cases, made by an independent reference.
 */
import { readFileSync } from "node:fs";
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import { type Value, ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specSegment, specVariant, specVariantBucket, sql, status, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const DEFAULTS = { color: "blue", size: 14, layout: { columns: 2 }, beta: false };
const VARIANTS: { key: string; weight: number; params: JsonObject }[] = [
  { key: "control", weight: 4000, params: { size: 16 } },
  { key: "treatment", weight: 6000, params: { color: "green", layout: { rows: 3 } } },
];
const paramsOf = (key: string) => VARIANTS.find((v) => v.key === key)!.params;

/** The segments of namespace `ns` each experiment holds, read from the store. */
async function owners(ns: string): Promise<Map<number, string>> {
  const rows = await sql<{ segment: number; key: string }>(
    t.databaseUrl,
    `SELECT s.segment, e.key FROM namespace_segments s JOIN namespaces n ON n.id = s.namespace_id
       JOIN experiments e ON e.id = s.experiment_id WHERE n.key = $1`,
    [ns],
  );
  return new Map(rows.map((r) => [r.segment, r.key]));
}

describe("namespace default params", () => {
  it("are stored at creation, shown by Get and List, changed by UpdateNamespace and audited", async () => {
    const created = (await t.experiments.createNamespace({ key: "dp", segments: 10, defaultParams: DEFAULTS })).namespace!;
    expect(created.defaultParams).toEqual(DEFAULTS);
    expect((await t.experiments.getNamespace({ key: "dp" })).namespace!.defaultParams).toEqual(DEFAULTS);
    const listed = (await t.experiments.listNamespaces({})).namespaces.find((n) => n.key === "dp")!;
    expect(listed.defaultParams).toEqual(DEFAULTS);

    const next = { color: "red" };
    expect((await t.experiments.updateNamespace({ key: "dp", defaultParams: next })).namespace!.defaultParams).toEqual(next);
    // Absent: unchanged, nothing recorded.
    expect((await t.experiments.updateNamespace({ key: "dp" })).namespace!.defaultParams).toEqual(next);
    // Empty: removed.
    expect((await t.experiments.updateNamespace({ key: "dp", defaultParams: {} })).namespace!.defaultParams).toBeUndefined();

    const { changes } = await t.experiments.listChanges({ objectKind: "namespace", objectKey: "dp" });
    expect(changes.map((c) => c.rpc)).toEqual(["UpdateNamespace", "UpdateNamespace", "CreateNamespace"]);
    // Each change moved the version by one (the call that changed nothing did not).
    expect(changes.map((c) => [c.versionBefore, c.versionAfter])).toEqual([
      [2n, 3n],
      [1n, 2n],
      [undefined, 1n],
    ]);
    const fields = (i: number) => Object.fromEntries(changes[i]!.fields.map((f) => [f.field, [json(f.before), json(f.after)]]));
    expect(fields(1).default_params).toEqual([DEFAULTS, next]);
    expect(fields(0).default_params).toEqual([next, null]);
    expect(fields(2).default_params).toEqual([null, DEFAULTS]);
  });

  it("follow the params rules (depth 32, 16,384 bytes): INVALID_ARGUMENT naming default_params, nothing stored", async () => {
    let deep: JsonObject = { leaf: 1 };
    for (let i = 0; i < 32; i++) deep = { d: deep }; // 33 levels
    await expectFailure(t.experiments.createNamespace({ key: "too-deep", defaultParams: deep }), status.INVALID_ARGUMENT, "default_params");
    await expectFailure(
      t.experiments.createNamespace({ key: "too-big", defaultParams: { s: "x".repeat(17_000) } }),
      status.INVALID_ARGUMENT,
      "default_params",
      "16384",
    );
    await t.experiments.createNamespace({ key: "dp-bad", segments: 5, defaultParams: { a: 1 } });
    await expectFailure(t.experiments.updateNamespace({ key: "dp-bad", defaultParams: deep }), status.INVALID_ARGUMENT, "default_params");
    const keys = (await t.experiments.listNamespaces({})).namespaces.map((n) => n.key);
    expect(keys).not.toContain("too-deep");
    expect(keys).not.toContain("too-big");
    expect((await t.experiments.getNamespace({ key: "dp-bad" })).namespace!.defaultParams).toEqual({ a: 1 });
    await expectFailure(t.experiments.updateNamespace({ key: "no-such-ns", defaultParams: { a: 1 } }), status.NOT_FOUND, "no-such-ns");
  });

  it("versions a namespace: every change moves it; an update naming an older one is ABORTED and changes nothing", async () => {
    const created = (await t.experiments.createNamespace({ key: "nv", segments: 10 })).namespace!;
    expect(created.version).toBe(1n);
    await t.experiments.createExperiment({ key: "nv-e", variants: [{ key: "a", weight: 10_000 }] });
    const allocated = (await t.experiments.allocateSegments({ namespaceKey: "nv", experimentKey: "nv-e", segments: 3 })).namespace!;
    expect(allocated.version).toBe(2n);
    const changed = (await t.experiments.updateNamespace({ key: "nv", version: 2n, defaultParams: { x: 1 } })).namespace!;
    expect([changed.version, changed.defaultParams]).toEqual([3n, { x: 1 }]);
    // A writer that read version 2 before that change is refused, naming the current version.
    await expectFailure(
      t.experiments.updateNamespace({ key: "nv", version: 2n, defaultParams: { x: 2 } }),
      status.ABORTED,
      "version",
      "at version 3",
    );
    await expectFailure(t.experiments.updateNamespace({ key: "nv", version: 2n }), status.ABORTED, "at version 3");
    expect((await t.experiments.getNamespace({ key: "nv" })).namespace!).toMatchObject({ version: 3n, defaultParams: { x: 1 } });
    // The same params again change nothing: the version stays.
    expect((await t.experiments.updateNamespace({ key: "nv", version: 3n, defaultParams: { x: 1 } })).namespace!.version).toBe(3n);
  });
});

describe("ResolveParams", () => {
  const NS = "rp";
  const NS_SALT = "rp-salt";
  const SEGMENTS = 100;
  let owned: Map<number, string>;
  beforeAll(async () => {
    await t.experiments.createNamespace({ key: NS, salt: NS_SALT, segments: SEGMENTS, defaultParams: DEFAULTS });
    await t.experiments.createExperiment({
      key: "rp-e",
      salt: "rp-e-salt",
      variants: VARIANTS,
      status: ExperimentStatus.RUNNING,
      tags: ["home"],
    });
    // Rollout 0: nobody is enrolled, everyone in its segments gets its default variant (control).
    await t.experiments.createExperiment({ key: "rp-off", variants: VARIANTS, rollout: 0, status: ExperimentStatus.RUNNING });
    await t.experiments.allocateSegments({ namespaceKey: NS, experimentKey: "rp-e", segments: 40 });
    await t.experiments.allocateSegments({ namespaceKey: NS, experimentKey: "rp-off", segments: 30 });
    owned = await owners(NS);
  });

  /** What SPEC says unit `u` gets from the namespace on its first call. */
  function expected(u: string) {
    const holder = owned.get(specSegment(u, NS_SALT, SEGMENTS));
    if (holder === "rp-e") {
      const v = specVariant(u, "rp-e-salt", VARIANTS);
      return { experimentKey: "rp-e", variantKey: v, reason: Reason.NEW, params: { ...DEFAULTS, ...paramsOf(v) } };
    }
    if (holder === "rp-off") {
      return {
        experimentKey: "rp-off",
        variantKey: "control",
        reason: Reason.NOT_IN_ROLLOUT,
        params: { ...DEFAULTS, ...paramsOf("control") },
      };
    }
    return { experimentKey: "", variantKey: "", reason: Reason.UNSPECIFIED, params: DEFAULTS };
  }

  it("answers defaults, the variant's params laid over them (NEW, stored), then STICKY with the same params", async () => {
    const ids = units("rp-u-", 150);
    const seen = new Set<string>();
    for (const u of ids) {
      const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: [NS] })).namespaces;
      const want = expected(u);
      expect({ experimentKey: a!.experimentKey, variantKey: a!.variantKey, reason: a!.reason, params: a!.params }, u).toEqual(want);
      expect(a!.namespaceKey).toBe(NS);
      expect(a!.stored).toBe(want.reason === Reason.NEW);
      seen.add(`${want.experimentKey}/${want.reason}/${want.variantKey}`);
    }
    // Every kind of answer was exercised.
    expect([...seen].sort()).toEqual(["/0/", "rp-e/11/control", "rp-e/11/treatment", "rp-off/10/control"]);
    const stored = await storedAssignments(t.databaseUrl, "rp-e");
    const newOnes = ids.filter((u) => expected(u).reason === Reason.NEW);
    expect([...stored.keys()].sort()).toEqual([...newOnes].sort());
    for (const u of newOnes) expect(stored.get(u)!.variant).toBe(expected(u).variantKey);
    expect((await storedAssignments(t.databaseUrl, "rp-off")).size).toBe(0);

    // Again: the stored ones are STICKY with the same params; the rest as before.
    for (const u of ids) {
      const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: [NS] })).namespaces;
      const want = expected(u);
      expect(a!.reason).toBe(want.reason === Reason.NEW ? Reason.STICKY : want.reason);
      expect(a!.params).toEqual(want.params);
      expect(a!.variantKey).toBe(want.variantKey);
    }
  });

  it("BulkResolveParams answers what ResolveParams answers, packed per namespace", async () => {
    const ids = [...units("rp-b-", 120), "", "rp-b-3"];
    const { columns } = await t.assignments.bulkResolveParams({ unitIds: ids, namespaceKeys: [NS] });
    expect(columns).toHaveLength(1);
    const c = columns[0]!;
    expect(c.namespaceKey).toBe(NS);
    expect(c.legend[0]!.params).toEqual(DEFAULTS);
    expect(c.legend[0]!.experimentKey).toBe("");
    ids.forEach((u, i) => {
      const choice = c.legend[c.legendIndexes[i]!]!;
      if (u === "") {
        expect(c.reasons[i]).toBe(Reason.INVALID_UNIT);
        expect(choice.params).toEqual(DEFAULTS);
        return;
      }
      const want = expected(u);
      // rp-b-3 repeats: the same answer both times (NEW at its first position, also at its second).
      expect(
        { experimentKey: choice.experimentKey, variantKey: choice.variantKey, params: choice.params, reason: c.reasons[i] },
        u,
      ).toEqual({
        experimentKey: want.experimentKey,
        variantKey: want.variantKey,
        params: want.params,
        reason: want.reason,
      });
      expect(c.stored[i]).toBe(want.reason === Reason.NEW);
      expect(c.enrolled[i]).toBe(want.reason === Reason.NEW);
    });
    // And ResolveParams afterwards: STICKY, the same params.
    for (const u of ids.slice(0, 30)) {
      const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: [NS] })).namespaces;
      const want = expected(u);
      expect(a!.reason).toBe(want.reason === Reason.NEW ? Reason.STICKY : want.reason);
      expect(a!.params).toEqual(want.params);
    }
  });

  it("a dry run stores nothing", async () => {
    const ids = units("rp-dry-", 60).filter((u) => expected(u).reason === Reason.NEW);
    expect(ids.length).toBeGreaterThan(5);
    for (const u of ids) {
      const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: [NS], options: { dryRun: true } })).namespaces;
      expect([a!.reason, a!.stored, a!.params]).toEqual([Reason.NEW, false, expected(u).params]);
    }
    const stored = await storedAssignments(t.databaseUrl, "rp-e");
    expect(ids.filter((u) => stored.has(u))).toEqual([]);
  });

  it("without namespace keys: every namespace of the unit's types, or those holding an experiment with the tag", async () => {
    await t.experiments.createNamespace({ key: "rp-dev", unitType: "device_id", segments: 4, defaultParams: { dark: true } });
    const all = await t.assignments.resolveParams({ units: { user_id: "rp-all-1", device_id: "d-1" } });
    const keys = all.namespaces.map((n) => n.namespaceKey);
    expect(keys).toEqual([...keys].sort());
    expect(keys).toContain(NS);
    expect(keys).toContain("rp-dev");
    expect(all.namespaces.find((n) => n.namespaceKey === "rp-dev")!.params).toEqual({ dark: true });
    const onlyUsers = await t.assignments.resolveParams({ units: { user_id: "rp-all-1" } });
    expect(onlyUsers.namespaces.map((n) => n.namespaceKey)).not.toContain("rp-dev");
    const tagged = await t.assignments.resolveParams({ units: { user_id: "rp-all-1", device_id: "d-1" }, tag: "home" });
    expect(tagged.namespaces.map((n) => n.namespaceKey)).toEqual([NS]);
  });

  it("a unit of another type gets the defaults with UNIT_TYPE_MISMATCH; unknown namespaces and bad input are refused", async () => {
    const [a] = (await t.assignments.resolveParams({ units: { device_id: "d-2" }, namespaceKeys: [NS] })).namespaces;
    expect([a!.reason, a!.params, a!.experimentKey]).toEqual([Reason.UNIT_TYPE_MISMATCH, DEFAULTS, ""]);
    await expectFailure(
      t.assignments.resolveParams({ units: { user_id: "u" }, namespaceKeys: ["nope"] }),
      status.NOT_FOUND,
      "namespace_keys[0]",
    );
    await expectFailure(t.assignments.resolveParams({ units: {}, namespaceKeys: [NS] }), status.INVALID_ARGUMENT, "units");
    await expectFailure(
      t.assignments.resolveParams({ units: { user_id: "u" }, namespaceKeys: [NS], attributes: { "bad key": 1 } }),
      status.INVALID_ARGUMENT,
      "attributes",
    );
    await expectFailure(t.assignments.bulkResolveParams({ unitIds: [], namespaceKeys: [NS] }), status.INVALID_ARGUMENT, "unit_ids");
    await expectFailure(
      t.assignments.bulkResolveParams({ unitIds: ["a", "b"], namespaceKeys: [NS], unitAttributes: [{}] }),
      status.INVALID_ARGUMENT,
      "unit_attributes",
    );
  });

  it("a unit held out of the namespace's experiment gets the defaults under the default variant's params (HOLDOUT, not stored)", async () => {
    await t.experiments.createNamespace({ key: "rp-h", salt: "rp-h-salt", segments: 1, defaultParams: DEFAULTS });
    await t.experiments.createExperiment({
      key: "rp-h-e",
      salt: "rp-h-e-salt",
      variants: VARIANTS,
      defaultVariant: "treatment",
      status: ExperimentStatus.RUNNING,
      tags: ["rp-held"],
    });
    await t.experiments.allocateSegments({ namespaceKey: "rp-h", experimentKey: "rp-h-e", segments: 1 });
    await t.experiments.createHoldout({ key: "rp-holdout", salt: "rp-holdout-salt", share: 5000, tags: ["rp-held"] });
    const ids = units("rp-h-u-", 60);
    const isHeld = (u: string) => specVariantBucket(u, "rp-holdout-salt") < 5000;
    expect(ids.filter(isHeld).length).toBeGreaterThan(10);
    for (const u of ids) {
      const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: ["rp-h"] })).namespaces;
      const v = isHeld(u) ? "treatment" : specVariant(u, "rp-h-e-salt", VARIANTS);
      expect([a!.reason, a!.variantKey, a!.stored, a!.params], u).toEqual([
        isHeld(u) ? Reason.HOLDOUT : Reason.NEW,
        v,
        !isHeld(u),
        { ...DEFAULTS, ...paramsOf(v) },
      ]);
    }
    const stored = await storedAssignments(t.databaseUrl, "rp-h-e");
    expect([...stored.keys()].sort()).toEqual(ids.filter((u) => !isHeld(u)).sort());
  });

  it("passes the call's attributes (and each unit's in the bulk form) to the experiment's targeting condition", async () => {
    await t.experiments.createNamespace({ key: "rp-t", segments: 1, defaultParams: DEFAULTS });
    await t.experiments.createExperiment({
      key: "rp-t-e",
      salt: "rp-t-e-salt",
      variants: VARIANTS,
      status: ExperimentStatus.RUNNING,
      condition: 'attributes.country == "US"',
    });
    await t.experiments.allocateSegments({ namespaceKey: "rp-t", experimentKey: "rp-t-e", segments: 1 });
    const resolve = async (u: string, country: string) =>
      (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: ["rp-t"], attributes: { country } })).namespaces[0]!;
    const fr = await resolve("rp-t-1", "FR");
    expect([fr.reason, fr.variantKey, fr.stored, fr.params]).toEqual([
      Reason.NOT_TARGETED,
      "control",
      false,
      { ...DEFAULTS, ...paramsOf("control") },
    ]);
    const v = specVariant("rp-t-1", "rp-t-e-salt", VARIANTS);
    const us = await resolve("rp-t-1", "US");
    expect([us.reason, us.variantKey, us.stored, us.params]).toEqual([Reason.NEW, v, true, { ...DEFAULTS, ...paramsOf(v) }]);
    // Stored: STICKY whatever the attributes now say.
    expect((await resolve("rp-t-1", "FR")).reason).toBe(Reason.STICKY);

    const ids = ["rp-t-2", "rp-t-3", "rp-t-4"];
    const { columns } = await t.assignments.bulkResolveParams({
      unitIds: ids,
      namespaceKeys: ["rp-t"],
      attributes: { country: "US" },
      unitAttributes: [{}, { country: "FR" }, { other: 1 }],
    });
    expect(columns[0]!.reasons).toEqual([Reason.NEW, Reason.NOT_TARGETED, Reason.NEW]);
  });

  it("follows UpdateNamespace at once", async () => {
    const u = units("rp-upd-", 40).find((x) => expected(x).reason === Reason.UNSPECIFIED)!;
    await t.experiments.updateNamespace({ key: NS, defaultParams: { color: "purple" } });
    const [a] = (await t.assignments.resolveParams({ units: { user_id: u }, namespaceKeys: [NS] })).namespaces;
    expect(a!.params).toEqual({ color: "purple" });
    await t.experiments.updateNamespace({ key: NS, defaultParams: DEFAULTS });
  });

  it("merges every params case of spec/vectors/rules-v1.json", async () => {
    const file = JSON.parse(readFileSync(new URL("../../spec/vectors/rules-v1.json", import.meta.url), "utf8")) as {
      params: { defaults: JsonObject; variant_params: JsonObject | null; merged: JsonObject }[];
    };
    expect(file.params.length).toBeGreaterThan(0);
    const failures: string[] = [];
    for (const [i, c] of file.params.entries()) {
      const key = `vec-${i}`;
      await t.experiments.createNamespace({ key, segments: 1, defaultParams: c.defaults });
      await t.experiments.createExperiment({
        key: `${key}-e`,
        variants: [{ key: "only", weight: 10_000, params: c.variant_params ?? undefined }],
        status: ExperimentStatus.RUNNING,
      });
      await t.experiments.allocateSegments({ namespaceKey: key, experimentKey: `${key}-e`, segments: 1 });
      const [a] = (await t.assignments.resolveParams({ units: { user_id: "vector-unit" }, namespaceKeys: [key] })).namespaces;
      if (a!.reason !== Reason.NEW || JSON.stringify(sorted(a!.params ?? {})) !== JSON.stringify(sorted(c.merged))) {
        failures.push(`case ${i}: got ${JSON.stringify(a!.params)} (${Reason[a!.reason]}), want ${JSON.stringify(c.merged)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

/** Objects with their keys sorted, recursively. */
function sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sorted);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/** A FieldChange's value as JSON (null when unset). */
const json = (v: Value | undefined) => (v ? toJson(ValueSchema, v) : null);
