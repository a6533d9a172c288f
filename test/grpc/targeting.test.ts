/**
 * Targeting (SPEC.md rule 8, "Names and limits", "What may change after creation") through a real
 * gRPC client against a real server on PostgreSQL and Redis: a condition is saved with the
 * experiment (checked, versioned, audited, shown), units whose attributes make it not true get the
 * default variant, NOT_TARGETED, and are not stored; stored units stay STICKY whatever the
 * condition or their attributes become; bulk, matrix and stream calls take attributes for the
 * call and per unit (positional, per-unit values win key by key); bad input is INVALID_ARGUMENT
 * naming the field, and nothing is stored. Expected variants come from SPEC.md's hash
 * (./helpers.ts), not from the engine.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { type AssignmentColumn, columnAnswers, ExperimentStatus, Layer, Reason, type StreamAssignRequestSchema } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, status, storedAssignments } from "./helpers.js";

let t: TestServer;
const variants = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
const US = 'attributes.country == "US"';

beforeAll(async () => {
  t = await startTestServer({ httpPort: 0 });
});
afterAll(async () => t?.stop());

/** A RUNNING experiment whose default variant is "b", targeted by `condition`. */
async function targeted(key: string, condition = US) {
  return (await t.experiments.createExperiment({ key, variants, defaultVariant: "b", status: ExperimentStatus.RUNNING, condition }))
    .experiment!;
}

const assign = async (experimentKey: string, unitId: string, attributes?: Record<string, unknown>, explain = false) =>
  (
    await t.assignments.assign({
      experimentKey,
      unitId,
      attributes: attributes as never,
      options: { explain },
    })
  ).assignment!;

async function stream(requests: MessageInitShape<typeof StreamAssignRequestSchema>[]): Promise<AssignmentColumn[][]> {
  const out: AssignmentColumn[][] = [];
  for await (const r of t.assignments.streamAssign(
    (async function* () {
      for (const m of requests) yield m;
    })(),
  ))
    out.push(r.columns);
  return out;
}

describe("a targeted experiment", () => {
  it("is saved with its condition, which GetExperiment and ListExperiments show", async () => {
    const e = await targeted("geo");
    expect(e.condition).toBe(US);
    expect((await t.experiments.getExperiment({ key: "geo" })).experiment!.condition).toBe(US);
    const listed = (await t.experiments.listExperiments({})).experiments.find((x) => x.key === "geo");
    expect(listed?.condition).toBe(US);
  });

  it("answers the default variant, NOT_TARGETED, unstored, for missing or non-matching attributes; the hashed variant, NEW, stored, for matching ones", async () => {
    await targeted("geo-2");
    for (const attributes of [undefined, {}, { country: "FR" }, { country: "us" }, { country: ["US"] }, { region: "US" }]) {
      const a = await assign("geo-2", "u-miss", attributes, true);
      expect([a.variantKey, a.reason, a.enrolled, a.stored], JSON.stringify(attributes)).toEqual(["b", Reason.NOT_TARGETED, false, false]);
      // Explain says which layer and buckets; the reason says which rule decided.
      expect(a.explanation?.layer).toBe(Layer.COMPUTED);
    }
    expect((await storedAssignments(t.databaseUrl, "geo-2")).size).toBe(0);

    const ids = Array.from({ length: 20 }, (_, i) => `u-hit-${i}`);
    for (const id of ids) {
      const a = await assign("geo-2", id, { country: "US", version: 5 });
      expect([a.variantKey, a.reason, a.stored]).toEqual([specVariant(id, "geo-2", variants), Reason.NEW, true]);
    }
    const stored = await storedAssignments(t.databaseUrl, "geo-2");
    expect([...stored.keys()].sort()).toEqual([...ids].sort());
  });

  it("keeps stored units STICKY when their attributes change, and when the condition changes or is removed (rule 5 before rule 8)", async () => {
    let e = await targeted("geo-3");
    const id = "sticky-1";
    const variant = specVariant(id, "geo-3", variants);
    expect((await assign("geo-3", id, { country: "US" })).reason).toBe(Reason.NEW);
    for (const attributes of [undefined, { country: "FR" }]) {
      expect(await assign("geo-3", id, attributes)).toMatchObject({ variantKey: variant, reason: Reason.STICKY, stored: true });
    }

    // A new condition: a version, audited; stored units keep their variant.
    e = (await t.experiments.updateExperiment({ key: "geo-3", version: e.version, condition: 'attributes.country == "FR"' })).experiment!;
    expect([e.condition, e.version]).toEqual(['attributes.country == "FR"', 2n]);
    expect(await assign("geo-3", id, { country: "US" })).toMatchObject({ variantKey: variant, reason: Reason.STICKY });
    expect((await assign("geo-3", "new-us", { country: "US" })).reason).toBe(Reason.NOT_TARGETED);
    expect((await assign("geo-3", "new-fr", { country: "FR" })).reason).toBe(Reason.NEW);

    // An update that leaves the condition out keeps it.
    e = (await t.experiments.updateExperiment({ key: "geo-3", version: e.version, description: "d" })).experiment!;
    expect(e.condition).toBe('attributes.country == "FR"');

    // Cleared: no targeting; everyone is evaluated as without a condition.
    e = (await t.experiments.updateExperiment({ key: "geo-3", version: e.version, condition: "" })).experiment!;
    expect([e.condition, e.version]).toEqual(["", 4n]);
    expect((await assign("geo-3", "new-none")).reason).toBe(Reason.NEW);
    expect((await assign("geo-3", "new-us")).reason).toBe(Reason.NEW);
    expect(await assign("geo-3", id)).toMatchObject({ variantKey: variant, reason: Reason.STICKY });

    // Versions keep the condition they had; the audit log has every change of it.
    expect((await t.experiments.getExperiment({ key: "geo-3", version: 1n })).experiment!.condition).toBe(US);
    expect((await t.experiments.getExperiment({ key: "geo-3", version: 2n })).experiment!.condition).toBe('attributes.country == "FR"');
    const changes = (await t.experiments.listChanges({ objectKind: "experiment", objectKey: "geo-3" })).changes;
    const conditionChanges = changes
      .map((c) => c.fields.find((f) => f.field === "condition"))
      .filter((f) => f !== undefined)
      .map((f) => [f.before, f.after].map((v) => (v?.kind.case === "stringValue" ? v.kind.value : null)));
    // Newest first: cleared, changed, created.
    expect(conditionChanges).toEqual([
      ['attributes.country == "FR"', ""],
      [US, 'attributes.country == "FR"'],
      [null, US],
    ]);
  });

  it("overrides answer before targeting; a paused experiment answers PAUSED, not NOT_TARGETED", async () => {
    let e = await targeted("geo-4");
    await t.experiments.setOverrides({ experimentKey: "geo-4", overrides: [{ unitId: "tester", variantKey: "a" }] });
    expect(await assign("geo-4", "tester", { country: "FR" })).toMatchObject({ variantKey: "a", reason: Reason.OVERRIDE });
    e = (await t.experiments.getExperiment({ key: "geo-4" })).experiment!;
    await t.experiments.updateExperiment({ key: "geo-4", version: e.version, status: ExperimentStatus.PAUSED });
    expect(await assign("geo-4", "someone", { country: "FR" })).toMatchObject({ variantKey: "b", reason: Reason.PAUSED });
  });

  it("a richer condition: numbers, lists, `in`, `has()` and string functions", async () => {
    await targeted(
      "geo-5",
      'has(attributes.version) && attributes.version >= 5.2 && attributes.country in ["US", "CA"] && attributes.email.endsWith("@example.com") && !("beta" in attributes.flags)',
    );
    const base = { version: 5.2, country: "CA", email: "x@example.com", flags: ["alpha"] };
    expect((await assign("geo-5", "r-1", base)).reason).toBe(Reason.NEW);
    expect((await assign("geo-5", "r-2", { ...base, version: 5.1 })).reason).toBe(Reason.NOT_TARGETED);
    expect((await assign("geo-5", "r-3", { ...base, flags: ["beta"] })).reason).toBe(Reason.NOT_TARGETED);
    expect((await assign("geo-5", "r-4", { ...base, version: "6" })).reason).toBe(Reason.NOT_TARGETED); // a type error: not true
    const { version: _, ...noVersion } = base;
    expect((await assign("geo-5", "r-5", noVersion)).reason).toBe(Reason.NOT_TARGETED);
  });

  it("AssignUnit evaluates every experiment with the call's attributes", async () => {
    await targeted("unit-us");
    await targeted("unit-fr", 'attributes.country == "FR"');
    const r = await t.assignments.assignUnit({
      units: { user_id: "au-1" },
      experimentKeys: ["unit-us", "unit-fr"],
      attributes: { country: "FR" },
    });
    expect(r.assignments.map((a) => a.reason)).toEqual([Reason.NOT_TARGETED, Reason.NEW]);
  });
});

describe("attributes of bulk, matrix and stream calls", () => {
  const ids = ["p-0", "p-1", "p-2", "p-3"];
  // p-0 inherits the call's US; p-1 overrides it with FR; p-2 adds a key and keeps US; p-3 {}.
  const unitAttributes: JsonObject[] = [{}, { country: "FR" }, { tier: "gold" }, {}];
  const expected = [Reason.NEW, Reason.NOT_TARGETED, Reason.NEW, Reason.NEW];

  it("BulkAssign: per-unit attributes positional, over the call's key by key", async () => {
    await targeted("bulk-t");
    const col = (await t.assignments.bulkAssign({ experimentKey: "bulk-t", unitIds: ids, attributes: { country: "US" }, unitAttributes }))
      .column!;
    expect(columnAnswers(col).map((a) => a.reason)).toEqual(expected);
    expect(columnAnswers(col)[1]).toEqual({ variantKey: "b", reason: Reason.NOT_TARGETED, enrolled: false, stored: false });
    // Without call attributes, only the per-unit ones count.
    const alone = (
      await t.assignments.bulkAssign({ experimentKey: "bulk-t", unitIds: ["q-0", "q-1"], unitAttributes: [{ country: "US" }, {}] })
    ).column!;
    expect(alone.reasons).toEqual([Reason.NEW, Reason.NOT_TARGETED]);
    expect([...(await storedAssignments(t.databaseUrl, "bulk-t")).keys()].sort()).toEqual(["p-0", "p-2", "p-3", "q-0"]);
  });

  it("MatrixAssign: per-unit attributes positional to unit_ids, for every experiment", async () => {
    await targeted("matrix-us");
    await targeted("matrix-fr", 'attributes.country == "FR"');
    const columns = (
      await t.assignments.matrixAssign({
        experimentKeys: ["matrix-us", "matrix-fr"],
        unitIds: ids,
        attributes: { country: "US" },
        unitAttributes,
      })
    ).columns;
    expect(columns[0]!.reasons).toEqual(expected);
    expect(columns[1]!.reasons).toEqual([Reason.NOT_TARGETED, Reason.NEW, Reason.NOT_TARGETED, Reason.NOT_TARGETED]);
  });

  it("StreamAssign: the setup's attributes for every batch, each message's unit_attributes positional to its ids", async () => {
    await targeted("stream-t");
    const batches = await stream([
      { setup: { experimentKeys: ["stream-t"], attributes: { country: "US" } } },
      { unitIds: ids, unitAttributes },
      // No per-unit attributes: the setup's.
      { unitIds: ["s-0", "s-1"] },
      { unitIds: ["s-2"], unitAttributes: [{ country: "DE" }] },
    ]);
    expect(batches.map((b) => b[0]!.reasons)).toEqual([expected, [Reason.NEW, Reason.NEW], [Reason.NOT_TARGETED]]);
    // A stored unit stays STICKY in a stream too, whatever its attributes now.
    const again = await stream([{ setup: { experimentKeys: ["stream-t"] } }, { unitIds: ["p-0", "p-1"] }]);
    expect(again[0]![0]!.reasons).toEqual([Reason.STICKY, Reason.NOT_TARGETED]);
  });
});

describe("bad input: INVALID_ARGUMENT naming the field, nothing stored", () => {
  const atLeast = (prefix: string, bytes: number) => `${prefix}${"x".repeat(bytes - prefix.length - 1)}"`;

  it("conditions: 4097 bytes, one that does not parse, one naming an unknown variable (4096 bytes is fine)", async () => {
    const at4096 = atLeast('attributes.country == "', 4096);
    expect(Buffer.byteLength(at4096)).toBe(4096);
    const at4097 = atLeast('attributes.country == "', 4097);
    const bad: [string, string, ...(string | RegExp)[]][] = [
      ["too-long", at4097, "4096 bytes"],
      ["no-parse", 'attributes.country == "US" &&', /line 1, column \d+/],
      ["unknown-var", 'user.country == "US"', "unknown variable", "user", "line 1, column 1"],
      ["not-boolean", "attributes.version + 1.0", "boolean"],
    ];
    for (const [key, condition, ...mentions] of bad) {
      await expectFailure(
        t.experiments.createExperiment({ key, variants, status: ExperimentStatus.RUNNING, condition }),
        status.INVALID_ARGUMENT,
        "condition",
        ...mentions,
      );
      await expectFailure(t.experiments.getExperiment({ key }), status.NOT_FOUND);
    }
    const ok = (await t.experiments.createExperiment({ key: "at-4096", variants, condition: at4096 })).experiment!;
    expect(ok.condition).toBe(at4096);
    // Updates are refused alike, and change nothing.
    for (const [, condition, ...mentions] of bad) {
      await expectFailure(
        t.experiments.updateExperiment({ key: "at-4096", version: ok.version, condition, description: "changed" }),
        status.INVALID_ARGUMENT,
        "condition",
        ...mentions,
      );
    }
    const now = (await t.experiments.getExperiment({ key: "at-4096" })).experiment!;
    expect([now.version, now.condition, now.description]).toEqual([ok.version, at4096, ""]);
    const changes = (await t.experiments.listChanges({ objectKind: "experiment", objectKey: "at-4096" })).changes;
    expect(changes).toHaveLength(1);
  });

  it("attributes: 65 of them, a key with a space, a nested object, a null: refused on every call, nothing stored", async () => {
    await targeted("bad-attr", "true");
    const sixtyFive = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i]));
    const sixtyFour = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, i]));
    const bad: [Record<string, unknown>, ...(string | RegExp)[]][] = [
      [sixtyFive, "attributes", "at most 64"],
      [{ "a b": "x" }, 'attributes."a b"', "keys must match"],
      [{ geo: { country: "US" } }, "attributes.geo", "no objects"],
      [{ gone: null }, "attributes.gone"],
      [{ big: "x".repeat(1025) }, "attributes.big", "1024 bytes"],
    ];
    for (const [attributes, ...mentions] of bad) {
      const a = attributes as never;
      await expectFailure(
        t.assignments.assign({ experimentKey: "bad-attr", unitId: "x-1", attributes: a }),
        status.INVALID_ARGUMENT,
        ...mentions,
      );
      await expectFailure(
        t.assignments.assignUnit({ units: { user_id: "x-2" }, experimentKeys: ["bad-attr"], attributes: a }),
        status.INVALID_ARGUMENT,
        ...mentions,
      );
      await expectFailure(
        t.assignments.bulkAssign({ experimentKey: "bad-attr", unitIds: ["x-3"], attributes: a }),
        status.INVALID_ARGUMENT,
        ...mentions,
      );
      // Per unit: named by position; the valid units of the call are not stored either.
      const perUnit = mentions.map((m) => (typeof m === "string" ? m.replace(/^attributes/, "unit_attributes[1]") : m));
      await expectFailure(
        t.assignments.bulkAssign({ experimentKey: "bad-attr", unitIds: ["x-4", "x-5"], unitAttributes: [{}, a] }),
        status.INVALID_ARGUMENT,
        ...perUnit,
      );
      await expectFailure(
        t.assignments.matrixAssign({ experimentKeys: ["bad-attr"], unitIds: ["x-6", "x-7"], unitAttributes: [{}, a] }),
        status.INVALID_ARGUMENT,
        ...perUnit,
      );
      await expectFailure(
        stream([{ setup: { experimentKeys: ["bad-attr"], attributes: a } }, { unitIds: ["x-8"] }]),
        status.INVALID_ARGUMENT,
        ...mentions.map((m) => (typeof m === "string" ? m.replace(/^attributes/, "setup.attributes") : m)),
      );
    }
    expect((await storedAssignments(t.databaseUrl, "bad-attr")).size).toBe(0);
    // 64 are fine.
    expect((await assign("bad-attr", "x-ok", sixtyFour)).reason).toBe(Reason.NEW);
  });

  it("unit_attributes of another length than the ids: INVALID_ARGUMENT naming unit_attributes", async () => {
    await targeted("bad-len");
    await expectFailure(
      t.assignments.bulkAssign({ experimentKey: "bad-len", unitIds: ["l-0", "l-1"], unitAttributes: [{ country: "US" }] }),
      status.INVALID_ARGUMENT,
      "unit_attributes",
      "one entry per unit id (2)",
    );
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["bad-len"], unitIds: ["l-0"], unitAttributes: [{}, {}] }),
      status.INVALID_ARGUMENT,
      "unit_attributes",
    );
    // In a stream, the message at fault is named, and its units are not stored.
    await expectFailure(
      stream([
        { setup: { experimentKeys: ["bad-len"] } },
        { unitIds: ["l-2"], unitAttributes: [{ country: "US" }] },
        { unitIds: ["l-3", "l-4"], unitAttributes: [{ country: "US" }] },
      ]),
      status.INVALID_ARGUMENT,
      "messages[2].unit_attributes",
    );
    const stored = await storedAssignments(t.databaseUrl, "bad-len");
    expect(["l-0", "l-1", "l-3", "l-4"].filter((u) => stored.has(u))).toEqual([]);
  });
});

describe("over HTTP JSON", () => {
  it("Assign and CreateExperiment take attributes and conditions as JSON", async () => {
    const base = `http://127.0.0.1:${t.server.httpPort}`;
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${base}/${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return {
        status: res.status,
        body: (await res.json()) as { code?: string; message?: string; experiment?: { condition: string }; assignment?: object },
      };
    };
    const created = await post("assignment.v1.ExperimentService/CreateExperiment", {
      key: "http-geo",
      variants,
      defaultVariant: "b",
      status: "EXPERIMENT_STATUS_RUNNING",
      condition: US,
    });
    expect([created.status, created.body.experiment?.condition]).toEqual([200, US]);
    const hit = await post("assignment.v1.AssignmentService/Assign", {
      experimentKey: "http-geo",
      unitId: "h-1",
      attributes: { country: "US" },
    });
    expect(hit.body.assignment).toMatchObject({ variantKey: specVariant("h-1", "http-geo", variants), reason: "REASON_NEW" });
    const miss = await post("assignment.v1.AssignmentService/Assign", {
      experimentKey: "http-geo",
      unitId: "h-2",
      attributes: { country: "FR" },
    });
    expect(miss.body.assignment).toMatchObject({ variantKey: "b", reason: "REASON_NOT_TARGETED" });
    const bad = await post("assignment.v1.AssignmentService/Assign", {
      experimentKey: "http-geo",
      unitId: "h-3",
      attributes: { geo: { a: 1 } },
    });
    expect([bad.status, bad.body.code]).toEqual([400, "invalid_argument"]);
    expect(bad.body.message).toContain("attributes.geo");
    const badCondition = await post("assignment.v1.ExperimentService/CreateExperiment", {
      key: "http-bad",
      variants,
      condition: "nope ==",
    });
    expect([badCondition.status, badCondition.body.code]).toEqual([400, "invalid_argument"]);
    expect(badCondition.body.message).toContain("condition");
  });
});
