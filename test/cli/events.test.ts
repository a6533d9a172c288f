/** `assignment events tail` and `assignment stats` as their own processes against a real server. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

describe("assignment events tail / stats", () => {
  let t: TestServer;
  const dir = mkdtempSync(join(tmpdir(), "events-cli-"));
  beforeAll(async () => {
    t = await startTestServer({ events: { sequenceMs: 10 } });
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "tail-1", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "tail-2", variants, status: ExperimentStatus.RUNNING });
  });
  afterAll(async () => {
    await t?.stop();
  });
  const cli = (...args: string[]) => cliOk(t.server.address, args);

  it("prints every event once across runs that resume from a position file, as JSON lines", async () => {
    await t.assignments.bulkAssign({ experimentKey: "tail-1", unitIds: ["a1", "a2", "a3"] });
    await t.assignments.bulkAssign({ experimentKey: "tail-2", unitIds: ["b1"] });
    const file = join(dir, "pos");
    // Wait until the sequencer has numbered the four events (stats read the same counts).
    const until = async (n: number) => {
      for (let i = 0; i < 200; i++) {
        const out = await cli("events", "tail", "--from-start", "--until-caught-up", "--format", "jsonl");
        if (out.trim().split("\n").filter(Boolean).length >= n) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until(4);
    const first = await cli("events", "tail", "--from-start", "--until-caught-up", "--format", "jsonl", "--position-file", file);
    const lines1 = first
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines1.map((l) => [l.position, l.kind, l.experimentKey, l.unitId])).toEqual([
      ["1", "ASSIGNMENT_EVENT_KIND_ASSIGNED", "tail-1", "a1"],
      ["2", "ASSIGNMENT_EVENT_KIND_ASSIGNED", "tail-1", "a2"],
      ["3", "ASSIGNMENT_EVENT_KIND_ASSIGNED", "tail-1", "a3"],
      ["4", "ASSIGNMENT_EVENT_KIND_ASSIGNED", "tail-2", "b1"],
    ]);
    expect(readFileSync(file, "utf8").trim()).toBe("4");
    await t.experiments.eraseUnits({ unitIds: ["a2"] });
    await until(5);
    // Resumes after 4 (the file), prints only the new one, as text.
    const second = await cli("events", "tail", "--until-caught-up", "--position-file", file);
    expect(second).toBe("5 erased user_id a2\n");
    expect(readFileSync(file, "utf8").trim()).toBe("5");
    // Filter by experiment (with the erasures of its unit type); --from.
    const filtered = await cli("events", "tail", "--from", "1", "--until-caught-up", "--experiment", "tail-2");
    expect(filtered).toMatch(/^4 assigned tail-2 b1 [ab] hash\n5 erased user_id a2\n$/);
    // Stats read the live counts: three stored in tail-1, one erased.
    const stats = await cli("stats", "tail-1", "--json");
    const total = (JSON.parse(stats) as { totalUnits?: string }).totalUnits;
    expect(total).toBe("2");
    const bad = await runCli(t.server.address, ["events", "tail", "--from", "x"]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('--from: "x" is not a position')]);
    writeFileSync(join(dir, "junk"), "hello");
    const junk = await runCli(t.server.address, ["events", "tail", "--position-file", join(dir, "junk")]);
    expect([junk.code, junk.stderr]).toEqual([2, expect.stringContaining("does not hold a position")]);
  });
});
