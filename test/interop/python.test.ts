/**
 * The Python example client (clients/python/examples/client.py, on the assignment-client package's
 * sources) against a real server: its answers must equal the TypeScript client's for the same
 * requests, and for new units the variants SPEC.md gives, recomputed in pure Python by the
 * package's hashing (clients/python/examples/spec_hash.py). Also runs the Python golden-vector
 * check and holds it to every case of the vector file. The package itself, built and installed,
 * is tested by python-package.test.ts.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fromJson, toJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignRequestSchema,
  AssignResponseSchema,
  AssignUnitRequestSchema,
  AssignUnitResponseSchema,
  BulkAssignRequestSchema,
  BulkAssignResponseSchema,
  ExperimentStatus,
  MatrixAssignRequestSchema,
  MatrixAssignResponseSchema,
  StreamAssignRequestSchema,
  StreamAssignResponseSchema,
} from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { runPython, vectorsPath } from "./python.js";

interface Line {
  rpc: "Assign" | "AssignUnit" | "BulkAssign" | "MatrixAssign" | "StreamAssign";
  request: JsonValue;
  response: JsonValue;
}

interface Experiment {
  key: string;
  salt: string;
  variants: { key: string; weight: number }[];
  rollout: number;
}

const experiments: Experiment[] = [
  {
    key: "py-ab",
    salt: "py-ab",
    variants: [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ],
    rollout: 10_000,
  },
  {
    key: "py-abc",
    salt: "py-abc-sält-🧂",
    variants: [
      { key: "control", weight: 2000 },
      { key: "t1", weight: 3000 },
      { key: "t2", weight: 5000 },
    ],
    rollout: 6_000,
  },
];
const unknownKey = "py-missing";
const experimentKeys = [...experiments.map((e) => e.key), unknownKey];
// Valid ids only: Assign refuses an invalid unit id as a whole (INVALID_ARGUMENT).
const units = [...Array.from({ length: 12 }, (_, i) => `py-u-${i}`), "Größe-ü", "🙂-emoji", "中文-unit", " spaced id "];

async function pythonClient(address: string, extra: string[] = []): Promise<Line[]> {
  const args = [
    address,
    ...experimentKeys.flatMap((k) => ["--experiment", k]),
    ...units.flatMap((u) => ["--unit", u]),
    "--batch-size",
    "5",
    ...extra,
  ];
  const run = await runPython("client.py", args);
  expect(run.code, run.stderr).toBe(0);
  return run.stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Line);
}

/** The same request, through the TypeScript client; the answer as proto3 JSON. */
async function replay(t: TestServer, line: Line): Promise<JsonValue> {
  const json = <D extends DescMessage>(schema: D, msg: Parameters<typeof toJson<D>>[1]) => toJson(schema, msg);
  const a = t.assignments;
  switch (line.rpc) {
    case "Assign":
      return json(AssignResponseSchema, await a.assign(fromJson(AssignRequestSchema, line.request)));
    case "AssignUnit":
      return json(AssignUnitResponseSchema, await a.assignUnit(fromJson(AssignUnitRequestSchema, line.request)));
    case "BulkAssign":
      return json(BulkAssignResponseSchema, await a.bulkAssign(fromJson(BulkAssignRequestSchema, line.request)));
    case "MatrixAssign":
      return json(MatrixAssignResponseSchema, await a.matrixAssign(fromJson(MatrixAssignRequestSchema, line.request)));
    case "StreamAssign": {
      const requests = (line.request as JsonValue[]).map((r) => fromJson(StreamAssignRequestSchema, r));
      const out: JsonValue[] = [];
      for await (const r of a.streamAssign(
        (async function* () {
          yield* requests;
        })(),
      ))
        out.push(json(StreamAssignResponseSchema, r));
      return out;
    }
  }
}

/** A unit's first answer is NEW and every later one STICKY; compare the two as the same. */
const sticky = (v: JsonValue): JsonValue => JSON.parse(JSON.stringify(v).replaceAll('"REASON_NEW"', '"REASON_STICKY"'));

interface Answer {
  rpc: string;
  experiment: string;
  unit: string;
  variant: string;
  reason: string;
  enrolled: boolean;
  stored: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: proto3 JSON of any message
type J = Record<string, any>;

/** Every single answer of a call, unpacked (proto3 JSON leaves out empty and false values). */
function answersOf(line: Line): Answer[] {
  const req = line.request as J;
  const one = (a: J, unit: string): Answer => ({
    rpc: line.rpc,
    experiment: a.experimentKey,
    unit,
    variant: a.variantKey ?? "",
    reason: a.reason,
    enrolled: a.enrolled ?? false,
    stored: a.stored ?? false,
  });
  const column = (c: J, unitIds: string[]): Answer[] =>
    unitIds.map((unit, i) => ({
      rpc: line.rpc,
      experiment: c.experimentKey,
      unit,
      variant: c.legend[c.variantIndexes[i]],
      reason: c.reasons[i],
      enrolled: c.enrolled[i],
      stored: c.stored[i],
    }));
  const res = line.response as J;
  switch (line.rpc) {
    case "Assign":
      return [one(res.assignment, req.unitId ?? "")];
    case "AssignUnit":
      return (res.assignments as J[]).map((a) => one(a, Object.values(req.units as J)[0] as string));
    case "BulkAssign":
      return column(res.column, req.unitIds);
    case "MatrixAssign":
      return (res.columns as J[]).flatMap((c) => column(c, req.unitIds));
    case "StreamAssign": {
      const batches = (req as unknown as J[]).map((r) => r.unitIds as string[]);
      return (res as unknown as J[]).flatMap((r) => (r.columns as J[]).flatMap((c) => column(c, batches[Number(r.batch ?? 0)])));
    }
  }
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
  for (const e of experiments) {
    await t.experiments.createExperiment({
      key: e.key,
      salt: e.salt,
      variants: e.variants,
      rollout: e.rollout,
      status: ExperimentStatus.RUNNING,
    });
  }
});
afterAll(async () => t?.stop());

describe("Python client", () => {
  it("answers as the TypeScript client does, and as SPEC.md recomputed in Python", async () => {
    const first = await pythonClient(t.server.address);
    expect(first.map((l) => l.rpc)).toEqual([
      ...units.map(() => "Assign"),
      ...units.map(() => "AssignUnit"),
      ...experimentKeys.map(() => "BulkAssign"),
      "MatrixAssign",
      "StreamAssign",
    ]);

    // The TypeScript client, sending exactly the requests the Python client printed.
    const typescript: JsonValue[] = [];
    for (const line of first) typescript.push(await replay(t, line));
    first.forEach((line, i) => expect(sticky(line.response), `${line.rpc} ${JSON.stringify(line.request)}`).toEqual(sticky(typescript[i])));

    // Once every unit is stored, both clients answer byte for byte the same JSON.
    const second = await pythonClient(t.server.address);
    expect(second.map((l) => l.request)).toEqual(first.map((l) => l.request));
    second.forEach((line, i) => expect(line.response, `${line.rpc} ${JSON.stringify(line.request)}`).toEqual(typescript[i]));

    // SPEC.md, recomputed by spec_hash.py, for every (experiment, unit) the first run saw.
    const answers = first.flatMap(answersOf);
    expect(answers).toHaveLength(units.length * (1 + 4 * experimentKeys.length));
    const known = experiments.flatMap((e) => units.map((u) => ({ e, u })));
    const spec = await runPython(
      "spec_hash.py",
      ["evaluate"],
      JSON.stringify(known.map(({ e, u }) => ({ unit_id: u, salt: e.salt, weights: e.variants.map((v) => v.weight), rollout: e.rollout }))),
    );
    expect(spec.code, spec.stderr).toBe(0);
    const expected = new Map<string, { variant: string; enrolled: boolean }>();
    (JSON.parse(spec.stdout) as { variant: number | null }[]).forEach((r, i) => {
      const { e, u } = known[i];
      expected.set(
        `${e.key}\u0000${u}`,
        r.variant === null ? { variant: e.variants[0].key, enrolled: false } : { variant: e.variants[r.variant].key, enrolled: true },
      );
    });
    expect(
      [...expected.values()].some((x) => !x.enrolled),
      "some units are outside the rollout",
    ).toBe(true);

    const firstSeen = new Set<string>();
    for (const a of answers) {
      const id = `${a.experiment}\u0000${a.unit}`;
      const where = `${a.rpc} ${a.experiment} ${JSON.stringify(a.unit)}`;
      if (a.experiment === unknownKey) {
        expect([a.variant, a.reason, a.enrolled], where).toEqual(["", "REASON_UNKNOWN_EXPERIMENT", false]);
        continue;
      }
      const want = expected.get(id)!;
      if (!want.enrolled) {
        expect([a.variant, a.reason, a.enrolled, a.stored], where).toEqual([want.variant, "REASON_NOT_IN_ROLLOUT", false, false]);
        continue;
      }
      // The first answer for a new unit is NEW; every later one is the same variant, STICKY.
      const reason = firstSeen.has(id) ? "REASON_STICKY" : "REASON_NEW";
      firstSeen.add(id);
      expect([a.variant, a.reason, a.enrolled, a.stored], where).toEqual([want.variant, reason, true, true]);
    }
    expect(firstSeen.size).toBe([...expected.values()].filter((x) => x.enrolled).length);
  });
});

describe("Python SPEC hashing (spec_hash.py)", () => {
  const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")) as Record<"hash" | "buckets" | "segments" | "evaluate", unknown[]>;
  const sections = ["hash", "buckets", "segments", "evaluate"] as const;

  it("matches every golden vector", async () => {
    const run = await runPython("spec_hash.py", ["check", vectorsPath]);
    expect(run.code, run.stderr).toBe(0);
    const [summary, closing] = run.stdout.trim().split("\n");
    const counts = (JSON.parse(summary) as { counts: Record<string, { cases: number; passed: number; failed: number }> }).counts;
    for (const s of sections) {
      expect(vectors[s].length, s).toBeGreaterThan(0);
      expect(counts[s], s).toEqual({ cases: vectors[s].length, passed: vectors[s].length, failed: 0 });
    }
    const total = sections.reduce((n, s) => n + vectors[s].length, 0);
    expect(closing).toBe(`${total} passed, 0 failed`);
  });

  it("fails on a wrong vector", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "vectors-"));
    try {
      const file = path.join(dir, "v.json");
      copyFileSync(vectorsPath, file);
      const broken = JSON.parse(readFileSync(file, "utf8"));
      broken.evaluate[0].variant = broken.evaluate[0].variant === null ? 0 : null;
      writeFileSync(file, JSON.stringify(broken));
      const run = await runPython("spec_hash.py", ["check", file]);
      expect(run.code).toBe(1);
      expect(run.stdout.trim().split("\n").at(-1)).toMatch(/^\d+ passed, 1 failed$/);
      expect(run.stderr).toContain('"section": "evaluate"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
