/**
 * CopyAssignments (proto: "Copies the stored assignments of one experiment into another through a
 * variant mapping, in SQL on the server, streaming progress. Units the target already has are left
 * alone, so running it twice changes nothing the second time"). Expected rows are derived from
 * PostgreSQL snapshots taken by the test, never from the server's answers.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExperimentStatus,
  Reason,
  Source,
  columnAnswers,
  type CopyAssignmentsRequestSchema,
  type CopyAssignmentsResponse,
} from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, sql, status, storedAssignments, units, type WeightedVariant } from "../grpc/helpers.js";
import { chunk } from "./support/streams.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const source: WeightedVariant[] = [
  { key: "a0", weight: 4000 },
  { key: "a1", weight: 3000 },
  { key: "a2", weight: 3000 },
];
const target: WeightedVariant[] = [
  { key: "bx", weight: 5000 },
  { key: "by", weight: 5000 },
];
const mapping: Record<string, string> = { a0: "by", a1: "bx" }; // a2 unmapped

async function copy(req: MessageInitShape<typeof CopyAssignmentsRequestSchema>): Promise<CopyAssignmentsResponse[]> {
  const out: CopyAssignmentsResponse[] = [];
  for await (const r of t.experiments.copyAssignments(req)) out.push(r);
  return out;
}

/** Every column of the target's rows, as text, sorted by unit id: equal snapshots mean nothing changed. */
const snapshot = (key: string) =>
  sql<Record<string, string>>(
    t.databaseUrl,
    `SELECT a.unit_id, a.variant::text, a.version::text, a.source::text, a.assigned_at::text
       FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = $1 ORDER BY a.unit_id COLLATE "C"`,
    [key],
  );

/** Progress is monotonic; total never changes; the last message, and only it, is done. */
function checkProgress(progress: CopyAssignmentsResponse[], total: bigint) {
  expect(progress.length).toBeGreaterThan(0);
  progress.forEach((p, i) => {
    expect(p.total).toBe(total);
    expect(p.copied + p.skipped).toBe(p.scanned);
    expect(p.done).toBe(i === progress.length - 1);
    if (i > 0) {
      expect(p.scanned).toBeGreaterThanOrEqual(progress[i - 1].scanned);
      expect(p.copied).toBeGreaterThanOrEqual(progress[i - 1].copied);
      expect(p.skipped).toBeGreaterThanOrEqual(progress[i - 1].skipped);
    }
  });
  const last = progress[progress.length - 1];
  expect(last.scanned).toBe(total);
  return last;
}

describe("CopyAssignments", () => {
  it("copies A → B through the mapping, leaving what B has and unmapped variants alone; a second run copies nothing and changes nothing", async () => {
    await t.experiments.createExperiment({ key: "copy-a", variants: source, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "copy-b", variants: target, status: ExperimentStatus.RUNNING });
    const ids = units("c-", 30_000);
    for (const part of chunk(ids, 10_000)) await t.assignments.bulkAssign({ experimentKey: "copy-a", unitIds: part });
    // B already has 1,000 of them (hashed in B), and 500 units A does not have.
    const inB = ids.filter((_, i) => i % 30 === 7);
    expect(inB.length).toBe(1_000);
    await t.assignments.bulkAssign({ experimentKey: "copy-b", unitIds: [...inB, ...units("only-b-", 500)] });

    const a = await storedAssignments(t.databaseUrl, "copy-a");
    const bBefore = await storedAssignments(t.databaseUrl, "copy-b");
    expect(a.size).toBe(30_000);
    expect(bBefore.size).toBe(1_500);
    // A's variants are the SPEC hash (so the mapping is checked against independent values).
    expect(ids.filter((u) => a.get(u)!.variant !== specVariant(u, "copy-a", source))).toEqual([]);
    const willCopy = ids.filter((u) => mapping[a.get(u)!.variant] !== undefined && !bBefore.has(u));
    const unmapped = ids.filter((u) => a.get(u)!.variant === "a2");
    expect(unmapped.length).toBeGreaterThan(8_000);

    const progress = await copy({
      sourceExperimentKey: "copy-a",
      targetExperimentKey: "copy-b",
      variantMapping: mapping,
      batchSize: 4_000,
    });
    expect(progress.length).toBe(8); // 30,000 rows in steps of 4,000
    const last = checkProgress(progress, 30_000n);
    expect(last.copied).toBe(BigInt(willCopy.length));
    expect(last.skipped).toBe(BigInt(30_000 - willCopy.length));

    const bAfter = await storedAssignments(t.databaseUrl, "copy-b");
    expect(bAfter.size).toBe(1_500 + willCopy.length);
    // What B had is untouched; copied units carry the mapped variant; unmapped ones are absent.
    const same = (x?: { variant: string; source: number; version: bigint }, y?: { variant: string; source: number; version: bigint }) =>
      !!x && !!y && x.variant === y.variant && x.source === y.source && x.version === y.version;
    expect([...bBefore].filter(([u, v]) => !same(bAfter.get(u), v))).toEqual([]);
    const bExp = (await t.experiments.getExperiment({ key: "copy-b" })).experiment!;
    expect(
      willCopy.filter((u) => {
        const r = bAfter.get(u);
        return r?.variant !== mapping[a.get(u)!.variant] || r.source !== Source.IMPORT || r.version !== bExp.version;
      }),
    ).toEqual([]);
    expect(unmapped.filter((u) => bAfter.has(u) && !bBefore.has(u))).toEqual([]);

    // Reads of B answer the copied values (STICKY, enrolled).
    const sample = willCopy.slice(0, 2_000);
    const col = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "copy-b", unitIds: sample })).column!);
    expect(
      sample.filter((u, i) => col[i].variantKey !== mapping[a.get(u)!.variant] || col[i].reason !== Reason.STICKY || !col[i].enrolled),
    ).toEqual([]);

    // Again, in steps of 5,000 (30,000 is a multiple: the last step finds nothing more).
    const before2 = await snapshot("copy-b");
    const again = await copy({ sourceExperimentKey: "copy-a", targetExperimentKey: "copy-b", variantMapping: mapping, batchSize: 5_000 });
    const last2 = checkProgress(again, 30_000n);
    expect(last2.copied).toBe(0n);
    expect(last2.skipped).toBe(30_000n);
    expect(await snapshot("copy-b")).toEqual(before2);
  });

  it("refuses a unit-type mismatch (FAILED_PRECONDITION) and bad mappings (INVALID_ARGUMENT naming the field)", async () => {
    await t.experiments.createExperiment({ key: "copy-src", variants: source, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "copy-dst", variants: target, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "copy-dev", unitType: "device_id", variants: target, status: ExperimentStatus.RUNNING });
    await t.assignments.bulkAssign({ experimentKey: "copy-src", unitIds: units("r-", 100) });
    const req = { sourceExperimentKey: "copy-src", targetExperimentKey: "copy-dst", variantMapping: mapping };

    await expectFailure(copy({ ...req, targetExperimentKey: "copy-dev" }), status.FAILED_PRECONDITION, "device_id", "user_id");
    await expectFailure(copy({ ...req, variantMapping: { nope: "bx" } }), status.INVALID_ARGUMENT, 'variant_mapping["nope"]');
    await expectFailure(copy({ ...req, variantMapping: { a0: "bx", a1: "zz" } }), status.INVALID_ARGUMENT, 'variant_mapping["a1"]', "zz");
    await expectFailure(copy({ ...req, variantMapping: {} }), status.INVALID_ARGUMENT, "variant_mapping");
    await expectFailure(copy({ ...req, targetExperimentKey: "copy-src" }), status.INVALID_ARGUMENT, "target_experiment_key");
    await expectFailure(copy({ ...req, sourceExperimentKey: "no-such-experiment" }), status.NOT_FOUND, "no-such-experiment");
    await expectFailure(copy({ ...req, batchSize: 100_001 }), status.INVALID_ARGUMENT, "batch_size");
    // Nothing was copied by any of them.
    expect((await storedAssignments(t.databaseUrl, "copy-dst")).size).toBe(0);
    expect((await storedAssignments(t.databaseUrl, "copy-dev")).size).toBe(0);
  });
});
