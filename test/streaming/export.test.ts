/**
 * ExportAssignments (proto: "Every stored assignment of an experiment, in batches ordered by unit
 * id"; batch_size 1..50000, 10000 when 0). Expected rows come from PostgreSQL itself and from the
 * SPEC hash, never from the server's answers.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExperimentStatus,
  ImportPolicy,
  Source,
  type ExportAssignmentsRequestSchema,
  type ExportAssignmentsResponse,
} from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, specVariant, status, storedAssignments, units, type WeightedVariant } from "../grpc/helpers.js";
import { chunk } from "./support/streams.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

const variants: WeightedVariant[] = [
  { key: "north", weight: 2000 },
  { key: "south", weight: 3000 },
  { key: "east", weight: 2500 },
  { key: "west", weight: 2500 },
];

async function exportAll(req: MessageInitShape<typeof ExportAssignmentsRequestSchema>): Promise<ExportAssignmentsResponse[]> {
  const out: ExportAssignmentsResponse[] = [];
  for await (const r of t.experiments.exportAssignments(req)) out.push(r);
  return out;
}

/** UTF-8 byte order: what "ordered by unit id" means for any client, in any language. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("ExportAssignments", () => {
  // 25,000 hashed units (some of them overridden afterwards), 10,050 imported: 35,050 rows. And 50
  // overrides of units never assigned, which are not stored assignments: overrides are kept apart
  // (SPEC.md "Stored assignments"), so the export carries neither them nor the overriding variants.
  const hashedIds = units("h-", 25_000);
  // Imported ids that sort among the hashed ones and beyond ASCII, to check the order.
  const importedIds = [...units("I-", 10_040), ...units("h-5~", 5), "h-", "h-\u00e9", "h-\u{1F600}", "h-\uFFFD", "ü"];
  const overriddenHashed = hashedIds.filter((_, i) => i % 250 === 0); // 100
  const overrideOnly = units("o-", 50);
  const overrideVariant = (u: string) => variants[(u.length + u.charCodeAt(u.length - 1)) % variants.length].key;
  const importVariant = (i: number) => variants[i % variants.length].key;
  let expected: Map<string, { variant: string; source: number; version: bigint }>;

  beforeAll(async () => {
    await t.experiments.createExperiment({ key: "export-me", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "export-empty", variants, status: ExperimentStatus.RUNNING });
    for (const part of chunk(hashedIds, 10_000)) await t.assignments.bulkAssign({ experimentKey: "export-me", unitIds: part });
    const res = await t.experiments.importAssignments(
      (async function* () {
        yield {
          setup: { policy: ImportPolicy.SKIP_EXISTING },
          rows: importedIds.map((u, i) => ({ experimentKey: "export-me", unitId: u, variantKey: importVariant(i) })),
        };
      })(),
    );
    expect(res.imported).toBe(BigInt(importedIds.length));
    await t.experiments.setOverrides({
      experimentKey: "export-me",
      overrides: [...overriddenHashed, ...overrideOnly].map((u) => ({ unitId: u, variantKey: overrideVariant(u) })),
    });
    expected = await storedAssignments(t.databaseUrl, "export-me");
    expect(expected.size).toBe(35_050);
  });

  /** Checks a whole export against PostgreSQL and the sources it must carry; returns the batches' sizes. */
  function checkExport(batches: ExportAssignmentsResponse[]): number[] {
    const rows = batches.flatMap((b) =>
      b.unitIds.map((u, i) => ({ unitId: u, variant: b.legend[b.variantIndexes[i]], source: b.sources[i], version: b.versions[i] })),
    );
    for (const b of batches) {
      expect(b.experimentKey).toBe("export-me");
      expect(b.legend).toEqual(variants.map((v) => v.key));
      expect([b.variantIndexes.length, b.sources.length, b.versions.length]).toEqual([
        b.unitIds.length,
        b.unitIds.length,
        b.unitIds.length,
      ]);
    }
    // Every stored row exactly once, in unit id order.
    const ids = rows.map((r) => r.unitId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(expected.size);
    const outOfOrder = ids.findIndex((u, i) => i > 0 && byteOrder(ids[i - 1], u) >= 0);
    expect(outOfOrder, `unit ${JSON.stringify(ids[outOfOrder])} after ${JSON.stringify(ids[outOfOrder - 1])}`).toBe(-1);
    // Each row as stored, and the source it must have.
    const wrong = rows.filter((r) => {
      const e = expected.get(r.unitId);
      return !e || e.variant !== r.variant || e.source !== r.source || e.version !== r.version;
    });
    expect(wrong.slice(0, 5)).toEqual([]);
    const sourceOf = new Map(rows.map((r) => [r.unitId, r.source]));
    const badSource = [
      ...hashedIds.filter((u) => sourceOf.get(u) !== Source.HASH),
      ...importedIds.filter((u) => sourceOf.get(u) !== Source.IMPORT),
      ...overrideOnly.filter((u) => sourceOf.has(u)),
    ];
    expect(badSource).toEqual([]);
    // The variants themselves, independently of the stored rows: the SPEC hash (overridden units
    // too: their stored row is untouched) and the imported values.
    const variantOf = new Map(rows.map((r) => [r.unitId, r.variant]));
    const badVariant = [
      ...hashedIds.filter((u) => variantOf.get(u) !== specVariant(u, "export-me", variants)),
      ...importedIds.filter((u, i) => variantOf.get(u) !== importVariant(i)),
    ];
    expect(badVariant).toEqual([]);
    return batches.map((b) => b.unitIds.length);
  }

  it("returns every stored row once, ordered by unit id, with its variant (via the legend), source and version, in batches of the requested size", async () => {
    // 35,050 = 5 x 7,010: five full batches and no empty sixth one.
    expect(checkExport(await exportAll({ experimentKey: "export-me", batchSize: 7_010 }))).toEqual([7_010, 7_010, 7_010, 7_010, 7_010]);
    expect(checkExport(await exportAll({ experimentKey: "export-me", batchSize: 6_000 }))).toEqual([
      6_000, 6_000, 6_000, 6_000, 6_000, 5_050,
    ]);
  });

  it("batch_size 0 means 10,000; 1 and 50,000 are allowed", async () => {
    expect(checkExport(await exportAll({ experimentKey: "export-me" }))).toEqual([10_000, 10_000, 10_000, 5_050]);
    expect(checkExport(await exportAll({ experimentKey: "export-me", batchSize: 50_000 }))).toEqual([35_050]);
    const ones: ExportAssignmentsResponse[] = [];
    for await (const r of t.experiments.exportAssignments({ experimentKey: "export-me", batchSize: 1 })) {
      ones.push(r);
      if (ones.length === 3) break;
    }
    expect(ones.map((r) => r.unitIds.length)).toEqual([1, 1, 1]);
    const first3 = [...expected.keys()].sort(byteOrder).slice(0, 3);
    expect(ones.map((r) => r.unitIds[0])).toEqual(first3);
  });

  it("an experiment without stored rows exports nothing", async () => {
    expect(await exportAll({ experimentKey: "export-empty" })).toEqual([]);
  });

  it("refuses batch_size out of range (INVALID_ARGUMENT), unknown experiments (NOT_FOUND) and malformed keys (INVALID_ARGUMENT)", async () => {
    await expectFailure(exportAll({ experimentKey: "export-me", batchSize: 50_001 }), status.INVALID_ARGUMENT, "batch_size");
    await expectFailure(exportAll({ experimentKey: "export-me", batchSize: 4_000_000_000 }), status.INVALID_ARGUMENT, "batch_size");
    await expectFailure(exportAll({ experimentKey: "no-such-experiment" }), status.NOT_FOUND, "no-such-experiment");
    await expectFailure(exportAll({ experimentKey: "Not A Key" }), status.INVALID_ARGUMENT, "experiment_key");
    await expectFailure(exportAll({ experimentKey: "" }), status.INVALID_ARGUMENT, "experiment_key");
  });
});
