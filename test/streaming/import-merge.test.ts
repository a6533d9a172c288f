import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ImportPolicy, Reason, Source } from "assignment-client";
import { IMPORT_CHUNK_ROWS } from "../../src/store/transfer-store.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { sql, storedAssignments } from "../grpc/helpers.js";

// SKIP_EXISTING COPYs straight into assignments while the experiment held nothing when the import
// began, and falls back to the staged INSERT … ON CONFLICT when that meets a unit twice; both
// must give the same rows.
describe("import merge paths", () => {
  let t: TestServer;
  const variants = [
    { key: "a", weight: 5000 },
    { key: "b", weight: 5000 },
  ];
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  const rowsOf = async (key: string) =>
    (
      await sql<{ unit_id: string; variant: number; source: number }>(
        t.databaseUrl,
        `SELECT a.unit_id, a.variant, a.source FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = $1 ORDER BY a.unit_id`,
        [key],
      )
    ).map((r) => [r.unit_id, r.variant, r.source]);

  async function importRows(rows: { experimentKey: string; unitId: string; variantKey: string }[]) {
    return t.experiments.importAssignments(
      (async function* () {
        yield { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows };
      })(),
    );
  }

  it("into an empty experiment, every row is stored (variant ids 0 and 1 for a and b, source IMPORT = 2)", async () => {
    await t.experiments.createExperiment({ key: "fresh", variants, status: ExperimentStatus.RUNNING });
    const rows = Array.from({ length: 3_000 }, (_, i) => ({
      experimentKey: "fresh",
      unitId: `f-${String(i).padStart(5, "0")}`,
      variantKey: i % 3 ? "a" : "b",
    }));
    const r = await importRows(rows);
    expect([r.received, r.imported, r.skipped, r.invalid]).toEqual([3_000n, 3_000n, 0n, 0n]);
    expect(await rowsOf("fresh")).toEqual(rows.map((x, i) => [x.unitId, i % 3 ? 0 : 1, 2]));
  });

  it("a unit repeated in an import into an empty experiment: the first row counts, the rest are skipped", async () => {
    await t.experiments.createExperiment({ key: "repeats", variants, status: ExperimentStatus.RUNNING });
    const rows = [
      { experimentKey: "repeats", unitId: "r-1", variantKey: "a" },
      { experimentKey: "repeats", unitId: "r-2", variantKey: "b" },
      { experimentKey: "repeats", unitId: "r-1", variantKey: "b" }, // repeat: the first (a) counts
      { experimentKey: "repeats", unitId: "r-3", variantKey: "a" },
    ];
    const r = await importRows(rows);
    expect([r.received, r.imported, r.skipped]).toEqual([4n, 3n, 1n]);
    expect(await rowsOf("repeats")).toEqual([
      ["r-1", 0, 2],
      ["r-2", 1, 2],
      ["r-3", 0, 2],
    ]);
    const a = await t.assignments.assign({ experimentKey: "repeats", unitId: "r-1" });
    expect([a.assignment?.variantKey, a.assignment?.reason]).toEqual(["a", Reason.STICKY]);
  });

  it("a unit repeated in a later message of the import: the first row still counts", async () => {
    await t.experiments.createExperiment({ key: "repeats-later", variants, status: ExperimentStatus.RUNNING });
    const first = Array.from({ length: 500 }, (_, i) => ({
      experimentKey: "repeats-later",
      unitId: `l-${String(i).padStart(3, "0")}`,
      variantKey: "a",
    }));
    const second = [
      { experimentKey: "repeats-later", unitId: "l-007", variantKey: "b" }, // repeat of a row in the first message
      { experimentKey: "repeats-later", unitId: "m-1", variantKey: "b" },
    ];
    const r = await t.experiments.importAssignments(
      (async function* () {
        yield { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows: first };
        yield { rows: second };
      })(),
    );
    expect([r.received, r.imported, r.skipped]).toEqual([502n, 501n, 1n]);
    const rows = await rowsOf("repeats-later");
    expect(rows.length).toBe(501);
    expect(rows.find((x) => x[0] === "l-007")).toEqual(["l-007", 0, 2]);
    expect(rows.find((x) => x[0] === "m-1")).toEqual(["m-1", 1, 2]);
  });

  it("into an experiment that already holds units, they keep their variant and the new ones are stored", async () => {
    await t.experiments.createExperiment({ key: "taken", variants, status: ExperimentStatus.RUNNING });
    const before = (await t.assignments.assign({ experimentKey: "taken", unitId: "t-1" })).assignment!;
    const other = before.variantKey === "a" ? "b" : "a";
    const r = await importRows([
      { experimentKey: "taken", unitId: "t-1", variantKey: other },
      { experimentKey: "taken", unitId: "t-2", variantKey: other },
    ]);
    expect([r.imported, r.skipped]).toEqual([1n, 1n]);
    const rows = await rowsOf("taken");
    expect(rows).toEqual([
      ["t-1", before.variantKey === "a" ? 0 : 1, 1],
      ["t-2", other === "a" ? 0 : 1, 2],
    ]);
  });
});

// An import of a new experiment COPYs its chunks (IMPORT_CHUNK_ROWS rows each) straight into
// assignments; a chunk that meets a unit stored meanwhile, or one the import already had, falls
// back to the staged merge. Either way the first row counts and nothing stored is replaced.
describe("import chunks into a new experiment, with a page load in the middle", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  it(`a unit assigned while the import runs keeps its answer; a unit repeated across chunks keeps its first row; every other row is stored`, async () => {
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    const exp = (await t.experiments.createExperiment({ key: "chunks", variants, status: ExperimentStatus.RUNNING })).experiment!;
    const total = IMPORT_CHUNK_ROWS * 2 + 5_000; // three chunks
    const per = 5_000;
    const unit = (i: number) => `c-${i}`;
    const variantOf = (i: number) => (i % 2 ? "b" : "a");
    const pageLoadAt = IMPORT_CHUNK_ROWS + 1_234; // in the second chunk
    const repeatOf = 17; // a unit of the first chunk, named again in the third
    const repeatAt = IMPORT_CHUNK_ROWS * 2 + 7;
    const rowAt = (i: number) =>
      i === repeatAt
        ? { experimentKey: "chunks", unitId: unit(repeatOf), variantKey: variantOf(repeatOf + 1) }
        : { experimentKey: "chunks", unitId: unit(i), variantKey: variantOf(i) };
    let pageLoad: { variantKey: string; reason: Reason } | undefined;
    const r = await t.experiments.importAssignments(
      (async function* () {
        for (let i = 0; i < total; i += per) {
          if (i === IMPORT_CHUNK_ROWS) {
            // The whole first chunk has been sent, the unit below not yet: a page load stores it now.
            const a = (await t.assignments.assign({ experimentKey: "chunks", unitId: unit(pageLoadAt) })).assignment!;
            pageLoad = { variantKey: a.variantKey, reason: a.reason };
          }
          const rows = Array.from({ length: per }, (_, k) => rowAt(i + k));
          yield i === 0 ? { setup: { policy: ImportPolicy.SKIP_EXISTING }, rows } : { rows };
        }
      })(),
    );
    expect(pageLoad?.reason).toBe(Reason.NEW);
    expect([r.received, r.imported, r.skipped, r.invalid]).toEqual([BigInt(total), BigInt(total - 2), 2n, 0n]);

    const stored = await storedAssignments(t.databaseUrl, "chunks");
    expect(stored.size).toBe(total - 1); // every unit once; the repeat adds none
    const wrong: string[] = [];
    for (let i = 0; i < total; i++) {
      if (i === repeatAt) continue;
      const s = stored.get(unit(i));
      const want =
        i === pageLoadAt
          ? { variant: pageLoad!.variantKey, source: Source.HASH, version: exp.version }
          : { variant: variantOf(i), source: Source.IMPORT, version: exp.version };
      if (s?.variant !== want.variant || s.source !== want.source || s.version !== want.version)
        wrong.push(`${unit(i)}: ${JSON.stringify(s, (_, v) => (typeof v === "bigint" ? Number(v) : v))}`);
    }
    expect(wrong).toEqual([]);
    const again = (await t.assignments.assign({ experimentKey: "chunks", unitId: unit(pageLoadAt) })).assignment!;
    expect([again.variantKey, again.reason]).toEqual([pageLoad!.variantKey, Reason.STICKY]);
  });
});
