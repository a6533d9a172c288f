/** import and export through the CLI against a real server. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "assignment-client";
import { csvLine, readCsv } from "../../src/cli/csv.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

async function parseCsv(text: string): Promise<string[][]> {
  const out: string[][] = [];
  for await (const r of readCsv(Readable.from([text]))) out.push(r);
  return out;
}

describe("assignment import / export", () => {
  let t: TestServer;
  let dir: string;
  beforeAll(async () => {
    t = await startTestServer();
    dir = mkdtempSync(path.join(os.tmpdir(), "cli-transfers-"));
    for (const key of ["legacy", "copy"]) {
      await t.experiments.createExperiment({
        key,
        variants: [
          { key: "control", weight: 5000 },
          { key: "treatment", weight: 5000 },
        ],
        status: ExperimentStatus.RUNNING,
      });
    }
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // 25,000 rows (three messages), ids that need quoting included, one of them holding a newline.
  const rows = Array.from({ length: 25_000 }, (_, i) => ({
    unit: i === 7 ? "multi\nline" : i % 1000 === 1 ? `a,"b" ${i}` : `legacy-${String(i).padStart(6, "0")}`,
    variant: i % 3 === 0 ? "treatment" : "control",
  }));

  it("imports a CSV, and exports exactly those rows back", async () => {
    const file = path.join(dir, "import.csv");
    writeFileSync(
      file,
      csvLine(["experiment_key", "unit_id", "variant_key"]) + rows.map((r) => csvLine(["legacy", r.unit, r.variant])).join(""),
    );
    const imported = await cliOk(t.server.address, ["import", file, "--json"]);
    expect(JSON.parse(imported)).toEqual({ received: 25_000, imported: 25_000, skipped: 0, invalid: 0, errors: [] });

    const exportFile = path.join(dir, "export.csv");
    await cliOk(t.server.address, ["export", "legacy", "--output", exportFile, "--batch-size", "7000"]);
    const [header, ...exported] = await parseCsv(readFileSync(exportFile, "utf8"));
    expect(header).toEqual(["experiment_key", "unit_id", "variant_key", "source", "version"]);
    // The export is ordered by the database's collation; compared here in one order of our own.
    const byUnit = (a: { unit: string }, b: { unit: string }) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0);
    expect(exported.map(([e, unit, variant, source]) => ({ e, unit, variant, source })).sort(byUnit)).toEqual(
      [...rows].sort(byUnit).map((r) => ({ e: "legacy", unit: r.unit, variant: r.variant, source: "IMPORT" })),
    );

    // An export is an import file: into another experiment, through stdin.
    const again = await cliOk(t.server.address, ["import", "--experiment", "copy"], { stdin: readFileSync(exportFile, "utf8") });
    expect(again).toContain("25,000 imported");
    const copied = await parseCsv(await cliOk(t.server.address, ["export", "copy"]));
    expect(copied.slice(1).map((r) => [r[1], r[2]])).toEqual(exported.map((r) => [r[1], r[2]]));
  });

  it("imports all or nothing: an invalid row refuses the import, exit code 1", async () => {
    const csv = "unit_id,variant_key\nfresh-1,control\nfresh-2,no-such-variant\n";
    const r = await runCli(t.server.address, ["import", "--experiment", "legacy"], { stdin: csv });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("INVALID_ARGUMENT");
    expect(r.stderr).toContain('"no-such-variant" is not a variant of "legacy"');
    // In the command's terms: the file's line (header is line 1) and the flag, not proto fields.
    expect(r.stderr).toContain("stdin line 3 (data row 2): variant_key:");
    expect(r.stderr).toContain("pass --skip-invalid to import the valid rows");
    expect(r.stderr).not.toMatch(/rows\[|setup\./);
    const { column } = await t.assignments.bulkAssign({ experimentKey: "legacy", unitIds: ["fresh-1"], options: { dryRun: true } });
    expect(column!.stored[0]).toBe(false);

    const skipped = await cliOk(t.server.address, ["import", "--experiment", "legacy", "--skip-invalid", "--json"], { stdin: csv });
    expect(JSON.parse(skipped)).toMatchObject({ received: 2, imported: 1, invalid: 1 });
  });

  it("refuses a file without the needed columns as bad usage (exit code 2)", async () => {
    const r = await runCli(t.server.address, ["import"], { stdin: "unit,variant\nx,y\n" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the header must name unit_id and variant_key");
  });
});
