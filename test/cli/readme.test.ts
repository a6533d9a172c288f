/**
 * The README's command-line block, run as written and in order against a fresh real server: each
 * line through bash in an empty folder, `assignment` being bin/assignment.mjs (what `npx
 * assignment` runs). Every command must exit 0; then what the block did is checked through the
 * API. A new line in the block is run too, so the README cannot drift from the commands.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { REPO_ROOT } from "./run-cli.js";

/** The first ```sh block after the "## Command line" heading, one command a line. */
function readmeCommands(): string[] {
  const readme = readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
  const section = readme.indexOf("## Command line (`assignment`)");
  expect(section).toBeGreaterThan(0);
  const start = readme.indexOf("```sh\n", section) + "```sh\n".length;
  const end = readme.indexOf("```", start);
  return readme
    .slice(start, end)
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
}

let t: TestServer;
let dir: string;
beforeAll(async () => {
  t = await startTestServer();
  dir = mkdtempSync(path.join(os.tmpdir(), "readme-cli-"));
});
afterAll(async () => {
  await t?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the README's command-line examples", () => {
  it("run as written, in order, against a fresh server", { timeout: 300_000 }, async () => {
    const commands = readmeCommands();
    expect(commands.length).toBeGreaterThan(10);
    const bin = path.join(REPO_ROOT, "bin", "assignment.mjs");
    const env: NodeJS.ProcessEnv = { ...process.env, ASSIGNMENT_ADDRESS: t.server.address };
    delete env.ASSIGNMENT_TOKEN;
    for (const command of commands) {
      // Asynchronously: the server runs in this process.
      const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          "bash",
          ["-euo", "pipefail", "-c", `assignment() { "${process.execPath}" "${bin}" "$@"; }\n${command}`],
          { cwd: dir, encoding: "utf8", env, timeout: 120_000 },
          (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        ),
      );
      expect(r.code, `${command}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    }

    // What the block did, seen through the API.
    const button = (await t.experiments.getExperiment({ key: "checkout-button" })).experiment!;
    expect(button.status).toBe(ExperimentStatus.STOPPED);
    expect(button.winner).toBe("green");
    expect(button.variants.map((v) => [v.key, v.weight])).toEqual([
      ["control", 6000],
      ["green", 4000],
      ["blue", 0],
    ]);
    expect(button.rollout).toBe(5000);
    const price = (await t.experiments.getExperiment({ key: "price-test" })).experiment!;
    // Stopped before its segments were released (a running experiment with stored units keeps them).
    expect(price.status).toBe(ExperimentStatus.STOPPED);
    const ns = (await t.experiments.getNamespace({ key: "pricing" })).namespace!;
    expect(ns.freeSegments).toBe(10_000); // released at the end
    expect(ns.defaultParams).toEqual({ price: 10.99, currency: "EUR" }); // as updated
    const holdout = (await t.experiments.getHoldout({ key: "global-holdout" })).holdout!;
    expect([holdout.share, holdout.tags]).toEqual([1000, ["checkout"]]);
    // 1,000 units x 2 experiments, and a header.
    expect(readFileSync(path.join(dir, "answers.csv"), "utf8").trimEnd().split("\n")).toHaveLength(2_001);
    expect(existsSync(path.join(dir, "checkout.csv"))).toBe(true);
    const legacy = await t.assignments.bulkAssign({ experimentKey: "legacy-test", unitIds: ["old-1", "old-2"], options: { dryRun: true } });
    expect(legacy.column!.variantIndexes.map((i) => legacy.column!.legend[i])).toEqual(["a", "b"]);
    expect(legacy.column!.stored).toEqual([true, true]);
    // The migrate job copied them into legacy-next through its mapping (a -> control, b -> green).
    const next = await t.assignments.bulkAssign({ experimentKey: "legacy-next", unitIds: ["old-1", "old-2"], options: { dryRun: true } });
    expect(next.column!.variantIndexes.map((i) => next.column!.legend[i])).toEqual(["control", "green"]);
    expect(next.column!.stored).toEqual([true, true]);
    // Targeting: the US unit (u-777) was enrolled and stored, the French one (u-888) was not; the condition changed.
    const geo = (await t.experiments.getExperiment({ key: "geo-banner" })).experiment!;
    expect(geo.condition).toBe('attributes.country in ["US", "CA"]');
    const geoUnits = await t.assignments.bulkAssign({
      experimentKey: "geo-banner",
      unitIds: ["u-777", "u-888"],
      options: { dryRun: true },
    });
    expect(geoUnits.column!.stored).toEqual([true, false]);
  });
});
