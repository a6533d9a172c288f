/** The CLI's cohort command (StreamAssign) against a real server: the same answers as BulkAssign. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { columnAnswers, ExperimentStatus, Reason } from "assignment-client";
import { readCsv } from "../../src/cli/csv.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

async function parseCsv(text: string): Promise<string[][]> {
  const out: string[][] = [];
  for await (const r of readCsv(Readable.from([text]))) out.push(r);
  return out;
}

describe("assignment cohort", () => {
  let t: TestServer;
  let dir: string;
  // 10,000 distinct ids, some needing CSV quoting (comma, quote, spaces) or not ASCII.
  const ids = Array.from({ length: 10_000 }, (_, i) =>
    i % 997 === 0 ? `u,${i}` : i % 991 === 0 ? `q"${i}"` : i % 983 === 0 ? `ü-${i} x` : `user-${i}`,
  );
  const keys = ["cohort-a", "cohort-b"];

  beforeAll(async () => {
    t = await startTestServer();
    dir = mkdtempSync(path.join(os.tmpdir(), "cli-cohort-"));
    await t.experiments.createExperiment({
      key: "cohort-a",
      variants: [
        { key: "red", weight: 3334 },
        { key: "green", weight: 3333 },
        { key: "blue", weight: 3333 },
      ],
      rollout: 8000,
      status: ExperimentStatus.RUNNING,
    });
    await t.experiments.createExperiment({
      key: "cohort-b",
      variants: [
        { key: "off", weight: 5000 },
        { key: "on", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("assigns a 10,000-id file in batches, in order, with the answers BulkAssign gives", async () => {
    const file = path.join(dir, "ids.txt");
    writeFileSync(file, ids.join("\n") + "\n");
    const r = await runCli(t.server.address, ["cohort", ...keys, "--file", file, "--batch-size", "999"]);
    expect(r.stderr).toContain("assigned: 10,000 units");
    expect(r.code, r.stderr).toBe(0);
    const [header, ...rows] = await parseCsv(r.stdout);
    expect(header).toEqual(["unit_id", "experiment_key", "variant_key", "reason", "enrolled", "stored"]);
    expect(rows).toHaveLength(ids.length * keys.length);

    for (const [j, key] of keys.entries()) {
      const { column } = await t.assignments.bulkAssign({ experimentKey: key, unitIds: ids });
      const bulk = columnAnswers(column!);
      ids.forEach((id, i) => {
        const row = rows[i * keys.length + j];
        expect(row[0]).toBe(id);
        expect(row[1]).toBe(key);
        expect(row[2]).toBe(bulk[i].variantKey);
        expect(row[4]).toBe(String(bulk[i].enrolled));
        // First answer: NEW and stored, or not in the rollout; BulkAssign now finds it stored.
        if (bulk[i].enrolled) {
          expect(row[3]).toBe("NEW");
          expect(row[5]).toBe("true");
          expect(bulk[i].reason).toBe(Reason.STICKY);
        } else {
          expect(row[3]).toBe(Reason[bulk[i].reason]);
        }
      });
    }
    // The rollout of cohort-a leaves about a fifth of the units out.
    const enrolledA = rows.filter((row) => row[1] === "cohort-a" && row[4] === "true").length;
    expect(enrolledA).toBeGreaterThan(7_500);
    expect(enrolledA).toBeLessThan(8_500);
  });

  it("reads ids from stdin and writes JSON lines", async () => {
    const some = ids.slice(0, 1_500);
    const out = await cliOk(t.server.address, ["cohort", "cohort-b", "--format", "jsonl"], { stdin: some.join("\r\n") });
    const lines = out
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(some.length);
    const { column } = await t.assignments.bulkAssign({ experimentKey: "cohort-b", unitIds: some });
    const bulk = columnAnswers(column!);
    lines.forEach((l, i) => {
      expect(l).toEqual({
        unit_id: some[i],
        experiment_key: "cohort-b",
        variant_key: bulk[i].variantKey,
        reason: "STICKY",
        enrolled: true,
        stored: true,
      });
    });
  });

  it("puts no deadline on the stream: --timeout is for unary calls", async () => {
    const out = await cliOk(t.server.address, ["--timeout", "1ms", "cohort", "cohort-b"], { stdin: ids.slice(0, 2_000).join("\n") });
    expect(out.trimEnd().split("\n")).toHaveLength(2_001);
  });

  it("stops at the first batch naming an unknown experiment: stderr says which, exit code 2, no rows written", async () => {
    const many = Array.from({ length: 30_000 }, (_, i) => `x-${i}`).join("\n");
    const r = await runCli(t.server.address, ["cohort", "cohort-a", "cohort-typo", "--batch-size", "1000"], { stdin: many });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: no experiment "cohort-typo" on this server');
    // The header only: nothing of the 30,000 units was written.
    expect(r.stdout.trimEnd().split("\n")).toEqual(["unit_id,experiment_key,variant_key,reason,enrolled,stored"]);
    const allowed = await runCli(t.server.address, ["cohort", "cohort-typo", "--allow-unknown"], { stdin: "u-1\nu-2\n" });
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain("u-1,cohort-typo,,UNKNOWN_EXPERIMENT,false,false");
  });

  it("fails with the gRPC status and a non-zero exit code for an unknown unit type", async () => {
    const r = await runCli(t.server.address, ["cohort", "cohort-a", "--unit-type", "Bad Type"], { stdin: "u-1\n" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: INVALID_ARGUMENT \(gRPC status 3\): setup\.unit_type/);
  });
});
