/**
 * Bad input (SPEC.md "Names and limits"): every refusal is INVALID_ARGUMENT naming the field,
 * never INTERNAL, never a crash; odd but valid unit ids are stored byte-exact.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, failure, specVariant, sql, status, storedAssignments } from "./helpers.js";

let t: TestServer;
const variants = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];
beforeAll(async () => {
  t = await startTestServer();
  await t.experiments.createExperiment({ key: "bad", variants, status: ExperimentStatus.RUNNING });
});
afterAll(async () => t?.stop());

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

/** After every test: the server still answers, correctly. */
async function stillServing() {
  const a = (await t.assignments.assign({ experimentKey: "bad", unitId: "health-check", options: { dryRun: true } })).assignment!;
  expect(a.variantKey).toBe(specVariant("health-check", "bad", variants));
}

describe("unit ids", () => {
  const nul = "ab\u0000cd";
  const long600 = "x".repeat(600);
  const long513 = "é".repeat(256) + "z"; // 513 bytes

  it("U+0000, 600 and 513 bytes, empty: INVALID_ARGUMENT for Assign, INVALID_UNIT per item in bulk", async () => {
    for (const bad of [nul, long600, long513, "", "\u0000"]) {
      await expectFailure(t.assignments.assign({ experimentKey: "bad", unitId: bad }), status.INVALID_ARGUMENT, "unit_id");
    }
    const ids = ["ok-1", nul, long600, "ok-2", long513, "", "ok-1"];
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "bad", unitIds: ids })).column!);
    expect(col.map((c) => c.reason)).toEqual([
      Reason.NEW,
      Reason.INVALID_UNIT,
      Reason.INVALID_UNIT,
      Reason.NEW,
      Reason.INVALID_UNIT,
      Reason.INVALID_UNIT,
      Reason.NEW,
    ]);
    expect(col[1]).toEqual({ variantKey: "", reason: Reason.INVALID_UNIT, enrolled: false, stored: false });
    const m = (await t.assignments.matrixAssign({ experimentKeys: ["bad"], unitIds: ids })).columns[0];
    expect(m.reasons).toEqual([
      Reason.STICKY,
      Reason.INVALID_UNIT,
      Reason.INVALID_UNIT,
      Reason.STICKY,
      Reason.INVALID_UNIT,
      Reason.INVALID_UNIT,
      Reason.STICKY,
    ]);
    // Overrides and ClearOverrides name the item.
    await expectFailure(
      t.experiments.setOverrides({
        experimentKey: "bad",
        overrides: [
          { unitId: "fine", variantKey: "a" },
          { unitId: nul, variantKey: "a" },
        ],
      }),
      status.INVALID_ARGUMENT,
      "overrides[1].unit_id",
    );
    await expectFailure(t.experiments.clearOverrides({ experimentKey: "bad", unitIds: [long600] }), status.INVALID_ARGUMENT, "unit_ids[0]");
    // Nothing invalid reached the database.
    const stored = await storedAssignments(t.databaseUrl, "bad");
    expect([...stored.keys()].sort()).toEqual(["ok-1", "ok-2"]);
    await stillServing();
  });

  it("a 512-byte multibyte id is accepted and stored byte-exact", async () => {
    const ids = [
      "€".repeat(170) + "ab", // 3-byte chars
      "😀".repeat(128), // 4-byte chars (surrogate pairs in UTF-16)
      "é".repeat(256),
      "中".repeat(100) + "ü".repeat(106), // 300 + 212
    ];
    for (const id of ids) expect(bytes(id)).toBe(512);
    const a = (await t.assignments.assign({ experimentKey: "bad", unitId: ids[0] })).assignment!;
    expect([a.reason, a.variantKey]).toEqual([Reason.NEW, specVariant(ids[0], "bad", variants)]);
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "bad", unitIds: ids })).column!);
    ids.forEach((u, i) =>
      expect([col[i].variantKey, col[i].reason]).toEqual([specVariant(u, "bad", variants), i === 0 ? Reason.STICKY : Reason.NEW]),
    );
    const rows = await sql<{ unit_id: string; len: number; hex: string }>(
      t.databaseUrl,
      `SELECT unit_id, octet_length(unit_id) AS len, encode(convert_to(unit_id, 'UTF8'), 'hex') AS hex
         FROM assignments WHERE unit_id = ANY($1::text[])`,
      [ids],
    );
    expect(rows.length).toBe(ids.length);
    for (const id of ids) {
      const r = rows.find((x) => x.unit_id === id)!;
      expect(r).toBeDefined();
      expect(r.len).toBe(512);
      expect(r.hex).toBe(Buffer.from(id, "utf8").toString("hex"));
    }
    await stillServing();
  });

  it("SQL, emoji and combining characters are just ids: stored exactly, distinct from look-alikes", async () => {
    const injection = "'; DROP TABLE assignments; --";
    const decomposed = "e\u0301"; // e + combining acute
    const precomposed = "\u00e9"; // é
    const ids = [
      injection,
      `x" OR 1=1; --`,
      "Robert'); DROP TABLE experiments;--",
      decomposed,
      precomposed,
      "👩‍👩‍👧‍👦",
      "👩",
      "🏳️‍🌈",
      " leading and trailing ",
      "tab\tnew\nline",
      "\\x00 literally",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a hostile string, not a template
      "%s%n{0}${x}",
      "ᄀ각",
      "\u200b",
    ];
    expect(new Set(ids).size).toBe(ids.length);
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "bad", unitIds: ids })).column!);
    ids.forEach((u, i) =>
      expect([col[i].variantKey, col[i].reason, col[i].stored], JSON.stringify(u)).toEqual([
        specVariant(u, "bad", variants),
        Reason.NEW,
        true,
      ]),
    );
    const a = (await t.assignments.assign({ experimentKey: "bad", unitId: injection })).assignment!;
    expect([a.reason, a.variantKey]).toEqual([Reason.STICKY, specVariant(injection, "bad", variants)]);

    // Both tables still exist, and every id is stored exactly once, byte for byte.
    const [{ reg, exp }] = await sql<{ reg: string | null; exp: string | null }>(
      t.databaseUrl,
      `SELECT to_regclass('assignments')::text AS reg, to_regclass('experiments')::text AS exp`,
    );
    expect([reg, exp]).toEqual(["assignments", "experiments"]);
    const stored = await storedAssignments(t.databaseUrl, "bad");
    for (const u of ids) expect(stored.get(u)?.variant, JSON.stringify(u)).toBe(specVariant(u, "bad", variants));
    const rows = await sql<{ unit_id: string; hex: string }>(
      t.databaseUrl,
      `SELECT unit_id, encode(convert_to(unit_id, 'UTF8'), 'hex') AS hex FROM assignments WHERE unit_id = ANY($1::text[])`,
      [ids],
    );
    expect(rows.map((r) => r.unit_id).sort()).toEqual([...ids].sort());
    for (const r of rows) expect(r.hex).toBe(Buffer.from(r.unit_id, "utf8").toString("hex"));
    // e + U+0301 and U+00E9 look alike but are different units with their own rows.
    expect(
      rows
        .filter((r) => r.unit_id === decomposed || r.unit_id === precomposed)
        .map((r) => r.hex)
        .sort(),
    ).toEqual(["65cc81", "c3a9"]);
    await stillServing();
  });

  it("bytes that are not UTF-8 in a string field are INVALID_ARGUMENT, not INTERNAL", async () => {
    // AssignRequest{experiment_key = "bad" (field 1), unit_id = 0xff 0xfe (field 2)}, sent raw.
    const raw = Buffer.from([0x0a, 0x03, 0x62, 0x61, 0x64, 0x12, 0x02, 0xff, 0xfe]);
    const client = new grpc.Client(t.server.address, grpc.credentials.createInsecure());
    try {
      const f = await failure(
        new Promise((resolve, reject) =>
          client.makeUnaryRequest(
            "/assignment.v1.AssignmentService/Assign",
            (b: Buffer) => b,
            (b: Buffer) => b,
            raw,
            (err, res) => (err ? reject(err) : resolve(res)),
          ),
        ),
      );
      expect(status[f.code]).toBe("INVALID_ARGUMENT");
    } finally {
      client.close();
    }
    await stillServing();
  });
});

describe("configuration refused with INVALID_ARGUMENT naming the field", () => {
  const ok = { key: "fine-key", variants };
  const cases: Array<[string, Parameters<TestServer["experiments"]["createExperiment"]>[0], string]> = [
    ["key with capitals", { ...ok, key: "Bad-Key" }, "key"],
    ["key with a space", { ...ok, key: "bad key" }, "key"],
    ["key starting with a dot", { ...ok, key: ".bad" }, "key"],
    ["key of 129 characters", { ...ok, key: "k".repeat(129) }, "key"],
    ["empty key", { ...ok, key: "" }, "key"],
    ["unit type with capitals", { ...ok, unitType: "User_id" }, "unit_type"],
    ["unit type starting with a digit", { ...ok, unitType: "1user" }, "unit_type"],
    ["unit type of 65 characters", { ...ok, unitType: "u".repeat(65) }, "unit_type"],
    [
      "weights summing to 9999",
      {
        ...ok,
        variants: [
          { key: "a", weight: 5000 },
          { key: "b", weight: 4999 },
        ],
      },
      "variants",
    ],
    [
      "weights summing to 10001",
      {
        ...ok,
        variants: [
          { key: "a", weight: 5001 },
          { key: "b", weight: 5000 },
        ],
      },
      "variants",
    ],
    ["a weight above 10000", { ...ok, variants: [{ key: "a", weight: 20000 }] }, "variants[0].weight"],
    ["0 variants", { ...ok, variants: [] }, "variants"],
    ["101 variants", { ...ok, variants: Array.from({ length: 101 }, (_, i) => ({ key: `v${i}`, weight: i < 100 ? 100 : 0 })) }, "variants"],
    ["a bad variant key", { ...ok, variants: [{ key: "a b", weight: 10000 }] }, "variants[0].key"],
    [
      "a repeated variant key",
      {
        ...ok,
        variants: [
          { key: "a", weight: 5000 },
          { key: "a", weight: 5000 },
        ],
      },
      "variants[1].key",
    ],
    ["rollout 10001", { ...ok, rollout: 10_001 }, "rollout"],
    ["an empty salt", { ...ok, salt: "" }, "salt"],
    ["a salt of 257 bytes", { ...ok, salt: "s".repeat(257) }, "salt"],
    ["a default variant that is no variant", { ...ok, defaultVariant: "zzz" }, "default_variant"],
    ["a tag that is no key", { ...ok, tags: ["Bad Tag"] }, "tags[0]"],
    ["status STOPPED at creation", { ...ok, status: ExperimentStatus.STOPPED }, "status"],
    ["an unknown status", { ...ok, status: 42 as ExperimentStatus }, "status"],
  ];
  for (const [name, req, field] of cases) {
    it(`CreateExperiment: ${name} → ${field}`, async () => {
      const f = await expectFailure(t.experiments.createExperiment(req), status.INVALID_ARGUMENT, field);
      expect(f.details.length).toBeGreaterThan(field.length + 5); // and the rule
      await expectFailure(t.experiments.getExperiment({ key: "fine-key" }), status.NOT_FOUND);
    });
  }
  it("101 variants: the count is named with the limit", async () => {
    await expectFailure(t.experiments.createExperiment(cases[12][1]), status.INVALID_ARGUMENT, "variants", "100");
  });

  it("UpdateExperiment, namespaces, segments and assignment calls", async () => {
    const e = (await t.experiments.getExperiment({ key: "bad" })).experiment!;
    await expectFailure(
      t.experiments.updateExperiment({ key: "bad", version: e.version, rollout: 10_001 }),
      status.INVALID_ARGUMENT,
      "rollout",
    );
    await expectFailure(
      t.experiments.updateExperiment({
        key: "bad",
        version: e.version,
        variants: {
          variants: [
            { key: "a", weight: 1 },
            { key: "b", weight: 1 },
          ],
        },
      }),
      status.INVALID_ARGUMENT,
      "variants",
    );
    await expectFailure(
      t.experiments.updateExperiment({ key: "bad", version: e.version, variants: { variants: [] } }),
      status.INVALID_ARGUMENT,
      "variants",
    );
    await expectFailure(
      t.experiments.updateExperiment({ key: "bad", version: e.version, defaultVariant: "nope" }),
      status.INVALID_ARGUMENT,
      "default_variant",
    );
    await expectFailure(t.experiments.updateExperiment({ key: "Bad", version: e.version, rollout: 1 }), status.INVALID_ARGUMENT, "key");
    await expectFailure(t.experiments.updateExperiment({ key: "bad", version: 0n, rollout: 1 }), status.INVALID_ARGUMENT, "version");
    // Nothing changed.
    expect((await t.experiments.getExperiment({ key: "bad" })).experiment).toEqual(e);

    await expectFailure(t.experiments.createNamespace({ key: "ns0", segments: 0 }), status.INVALID_ARGUMENT, "segments");
    await expectFailure(t.experiments.createNamespace({ key: "ns0", segments: 100_001 }), status.INVALID_ARGUMENT, "segments", "100000");
    await expectFailure(t.experiments.createNamespace({ key: "NS", segments: 10 }), status.INVALID_ARGUMENT, "key");
    await expectFailure(t.experiments.createNamespace({ key: "ns0", unitType: "Device" }), status.INVALID_ARGUMENT, "unit_type");
    await expectFailure(t.experiments.getNamespace({ key: "ns0" }), status.NOT_FOUND);
    // The limits themselves are allowed.
    expect((await t.experiments.createNamespace({ key: "ns-max", segments: 100_000 })).namespace!.segments).toBe(100_000);
    expect((await t.experiments.createNamespace({ key: "ns-min", segments: 1 })).namespace!.segments).toBe(1);

    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "NS!", experimentKey: "bad", segments: 1 }),
      status.INVALID_ARGUMENT,
      "namespace_key",
    );
    await expectFailure(
      t.experiments.allocateSegments({ namespaceKey: "ns-max", experimentKey: "Bad!", segments: 1 }),
      status.INVALID_ARGUMENT,
      "experiment_key",
    );

    await expectFailure(t.assignments.assign({ experimentKey: "Bad!", unitId: "u" }), status.INVALID_ARGUMENT, "experiment_key");
    await expectFailure(t.assignments.assign({ experimentKey: "k".repeat(129), unitId: "u" }), status.INVALID_ARGUMENT, "experiment_key");
    await expectFailure(
      t.assignments.assign({ experimentKey: "bad", unitId: "u", unitType: "User" }),
      status.INVALID_ARGUMENT,
      "unit_type",
    );
    await expectFailure(
      t.assignments.bulkAssign({ experimentKey: "bad", unitIds: ["u"], unitType: "9x" }),
      status.INVALID_ARGUMENT,
      "unit_type",
    );
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["bad"], unitIds: ["u"], unitType: "x-y" }),
      status.INVALID_ARGUMENT,
      "unit_type",
    );
    await expectFailure(t.assignments.assignUnit({ units: { "Bad Type": "u" } }), status.INVALID_ARGUMENT, "units");
    await expectFailure(t.experiments.getExperiment({ key: "NOPE" }), status.INVALID_ARGUMENT, "key");
    await expectFailure(t.experiments.getExperimentStats({ key: "" }), status.INVALID_ARGUMENT, "key");
    await expectFailure(t.experiments.listExperiments({ status: 99 as ExperimentStatus }), status.INVALID_ARGUMENT, "status");
    await stillServing();
  });

  it("a burst of bad calls gives no INTERNAL and leaves the server serving", async () => {
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      calls.push(t.assignments.assign({ experimentKey: "bad", unitId: "\u0000".repeat(i + 1) }));
      calls.push(t.experiments.createExperiment({ key: `burst-${i}`, variants: [{ key: "a", weight: i }] }));
      calls.push(t.assignments.bulkAssign({ experimentKey: "bad", unitIds: [] }));
    }
    const codes = await Promise.all(calls.map((c) => failure(c).then((f) => f.code)));
    expect(new Set(codes.map((c) => status[c]))).toEqual(new Set(["INVALID_ARGUMENT"]));
    await stillServing();
  });
});
