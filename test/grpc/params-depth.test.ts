/**
 * Params nesting (SPEC.md "Names and limits": at most 32 levels deep, so that every protobuf
 * runtime can read an experiment back). The params object is level 1; each object or list inside
 * it one more. 32 is accepted by CreateExperiment and UpdateExperiment and read back whole, by the
 * TypeScript client and by Python's protobuf (whose parser stops just beyond it); 33 is
 * INVALID_ARGUMENT naming the field and the limit, and nothing is stored.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type JsonObject, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ListExperimentsResponseSchema } from "assignment-client";
import { packageDir, python, run } from "../interop/python.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, status, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

/** Objects nested `depth` deep: {"k": {"k": … {"k": 1}}}, `depth` objects in all. */
function objects(depth: number): JsonObject {
  let v: JsonValue = 1;
  for (let i = 0; i < depth; i++) v = { k: v };
  return v as JsonObject;
}
/** A params object holding lists: {"l": [[… [1] …]]}, `depth` levels in all (the object and depth - 1 lists). */
function lists(depth: number): JsonObject {
  let v: JsonValue = 1;
  for (let i = 0; i < depth - 1; i++) v = [v];
  return { l: v };
}

describe("params nesting", () => {
  it("32 levels are accepted and read back; 33 are INVALID_ARGUMENT naming the field and the limit", async () => {
    for (const [name, make] of [
      ["objects", objects],
      ["lists", lists],
    ] as const) {
      const key = `deep-${name}`;
      const created = await t.experiments.createExperiment({
        key,
        variants: [
          { key: "a", weight: 5000, params: make(32) },
          { key: "b", weight: 5000 },
        ],
        status: ExperimentStatus.RUNNING,
      });
      expect(created.experiment!.variants[0].params).toEqual(make(32));
      expect((await t.experiments.getExperiment({ key })).experiment!.variants[0].params).toEqual(make(32));

      const f = await expectFailure(
        t.experiments.createExperiment({
          key: `${key}-33`,
          variants: [
            { key: "a", weight: 5000 },
            { key: "b", weight: 5000, params: make(33) },
          ],
        }),
        status.INVALID_ARGUMENT,
        "variants[1].params",
        "32",
      );
      expect(f.details).toMatch(/deep/);
      await expectFailure(t.experiments.getExperiment({ key: `${key}-33` }), status.NOT_FOUND);

      const e = created.experiment!;
      await expectFailure(
        t.experiments.updateExperiment({
          key,
          version: e.version,
          variants: { variants: [{ key: "a", weight: 5000, params: make(33) }, e.variants[1]] },
        }),
        status.INVALID_ARGUMENT,
        "variants.variants[0].params",
        "32",
      );
      const still = (await t.experiments.getExperiment({ key })).experiment!;
      expect([still.version, still.variants[0].params]).toEqual([e.version, make(32)]);
      // Updating to 32 levels is fine too.
      const updated = await t.experiments.updateExperiment({
        key,
        version: e.version,
        variants: { variants: [e.variants[0], { key: "b", weight: 5000, params: make(32) }] },
      });
      expect(updated.experiment!.variants[1].params).toEqual(make(32));
    }
    // The answers carry them too.
    const unit = units("dp-", 50).find(
      (u) =>
        specVariant(u, "deep-objects", [
          { key: "a", weight: 5000 },
          { key: "b", weight: 5000 },
        ]) === "a",
    )!;
    const a = (await t.assignments.assign({ experimentKey: "deep-objects", unitId: unit, options: { includeParams: true } })).assignment!;
    expect([a.variantKey, a.params]).toEqual(["a", objects(32)]);
  });

  it("Python's protobuf parses a ListExperiments answer holding them", async () => {
    const answer = await t.experiments.listExperiments({});
    expect(answer.experiments.map((e) => e.key)).toEqual(expect.arrayContaining(["deep-objects", "deep-lists"]));
    const dir = mkdtempSync(path.join(os.tmpdir(), "params-depth-"));
    try {
      const file = path.join(dir, "list.bin");
      writeFileSync(file, toBinary(ListExperimentsResponseSchema, answer));
      const script = [
        "import sys",
        "from assignment.v1 import experiment_service_pb2 as es",
        "r = es.ListExperimentsResponse.FromString(open(sys.argv[1], 'rb').read())",
        "print(' '.join(sorted(e.key for e in r.experiments)))",
      ].join("\n");
      const r = await run(python(), ["-c", script, file], { env: { PYTHONPATH: path.join(packageDir, "gen") } });
      expect(r.stderr).toBe("");
      expect(r.stdout.trim().split(" ")).toEqual(expect.arrayContaining(["deep-objects", "deep-lists"]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
