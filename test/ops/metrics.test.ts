/** The Prometheus endpoint counts the calls made, and every call is logged with a request id. */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "assignment-client";
import { expectFailure, scrapeMetrics, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const calls = (method: string, code: string, service = "assignment.v1.AssignmentService") =>
  `assignment_grpc_calls_total{service="${service}",method="${method}",code="${code}"}`;

describe("metrics and call logs", () => {
  let t: TestServer;
  const logLines: Record<string, unknown>[] = [];
  const rawLines: string[] = [];
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split("\n")) {
          if (!line) continue;
          rawLines.push(line);
          logLines.push(JSON.parse(line));
        }
        done();
      },
    });
    t = await startTestServer({ metricsPort: 0, logger: pino({ level: "debug", base: { service: "assignment-server" } }, sink) });
  });
  afterAll(async () => t?.stop());

  it("serves counts of the calls made, by method and status, and the assignment metrics", async () => {
    expect(t.server.metricsPort).toBeGreaterThan(0);
    const before = await scrapeMetrics(t.server.metricsPort!);
    expect(before.get(calls("Assign", "OK")) ?? 0).toBe(0);

    await t.experiments.createExperiment({
      key: "m",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    for (let i = 0; i < 3; i++) await t.assignments.assign({ experimentKey: "m", unitId: "same-unit" });
    const ids = Array.from({ length: 500 }, (_, i) => `u-${i}`);
    await t.assignments.bulkAssign({ experimentKey: "m", unitIds: ids });
    await t.assignments.bulkAssign({ experimentKey: "m", unitIds: ids });
    await expectFailure(t.experiments.getExperiment({ key: "missing" }), status.NOT_FOUND);
    await expectFailure(t.assignments.bulkAssign({ experimentKey: "m", unitIds: [] }), status.INVALID_ARGUMENT);

    const m = await scrapeMetrics(t.server.metricsPort!);
    expect(m.get(calls("Assign", "OK"))).toBe(3);
    expect(m.get(calls("BulkAssign", "OK"))).toBe(2);
    expect(m.get(calls("BulkAssign", "INVALID_ARGUMENT"))).toBe(1);
    expect(m.get(calls("CreateExperiment", "OK", "assignment.v1.ExperimentService"))).toBe(1);
    expect(m.get(calls("GetExperiment", "NOT_FOUND", "assignment.v1.ExperimentService"))).toBe(1);
    expect(m.get(`assignment_grpc_call_duration_seconds_count{service="assignment.v1.AssignmentService",method="Assign",code="OK"}`)).toBe(
      3,
    );

    // Answers by reason: 1 + 500 new, then 2 + 500 sticky.
    expect(m.get(`assignment_assignments_total{reason="NEW"}`)).toBe(501);
    expect(m.get(`assignment_assignments_total{reason="STICKY"}`)).toBe(502);
    // Lookups: the first batch of each call missed memory and Redis; the repeats hit memory.
    expect(m.get(`assignment_cache_lookups_total{layer="memory",result="hit"}`)).toBe(502);
    expect(m.get(`assignment_cache_lookups_total{layer="memory",result="miss"}`)).toBe(501);
    expect(m.get(`assignment_cache_lookups_total{layer="redis",result="miss"}`)).toBe(501);
    expect(m.get(`assignment_cache_lookups_total{layer="postgres",result="miss"}`)).toBe(501);
    expect(m.get(`assignment_cache_hit_ratio{layer="memory"}`)).toBeCloseTo(502 / 1003, 6);
    // Rows per INSERT: one statement of 1 row, one of 500 (or split in two if they overlapped).
    expect(m.get("assignment_store_insert_rows_sum")).toBe(501);
    expect(m.get("assignment_store_pending_writes")).toBe(0);
    expect(m.has("process_cpu_user_seconds_total")).toBe(true);
  });

  it("exports the live counts per variant and source of RUNNING experiments only", async () => {
    const variants = [
      { key: "x", weight: 10_000 },
      { key: "y", weight: 0 },
    ];
    await t.experiments.createExperiment({ key: "live", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "live-draft", variants });
    await t.assignments.bulkAssign({ experimentKey: "live", unitIds: ["l1", "l2", "l3"] });
    await t.experiments.setOverrides({ experimentKey: "live", overrides: [{ unitId: "l9", variantKey: "y" }] });
    await t.experiments.setOverrides({ experimentKey: "live-draft", overrides: [{ unitId: "d1", variantKey: "y" }] });
    const units = (exp: string, variant: string, source: string) =>
      `assignment_experiment_units{experiment="${exp}",variant="${variant}",source="${source}"}`;
    let m = await scrapeMetrics(t.server.metricsPort!);
    // The sequencer numbers the events within its interval; the gauge follows.
    for (let i = 0; i < 100 && m.get(units("live", "y", "override")) !== 1; i++) {
      await new Promise((r) => setTimeout(r, 50));
      m = await scrapeMetrics(t.server.metricsPort!);
    }
    expect(m.get(units("live", "x", "hash"))).toBe(3);
    expect(m.get(units("live", "y", "override"))).toBe(1);
    expect([...m.keys()].filter((k) => k.includes('experiment="live-draft"'))).toEqual([]);
  });

  it("logs each call with its request id (the caller's x-request-id, or a new one), method, status and duration", async () => {
    await t.assignments.assign({ experimentKey: "m", unitId: "u-1" }, { metadata: { "x-request-id": "req-from-caller-42" } });
    await expectFailure(t.experiments.getExperiment({ key: "missing-too" }), status.NOT_FOUND);
    const mine = logLines.find((l) => l.requestId === "req-from-caller-42");
    expect(mine).toMatchObject({
      level: 20,
      service: "assignment-server",
      rpc: "assignment.v1.AssignmentService/Assign",
      method: "Assign",
      protocol: "grpc",
      code: "OK",
      msg: "call",
    });
    // One "service" key a line (the server's): a second one would be lost by every JSON parser.
    for (const raw of rawLines) expect(raw.match(/"service":/g)?.length ?? 0, raw).toBeLessThanOrEqual(1);
    expect(typeof mine!.durationMs).toBe("number");
    const failed = logLines.find((l) => l.method === "GetExperiment" && l.details === 'key: no experiment "missing-too"');
    expect(failed).toMatchObject({ level: 30, code: "NOT_FOUND", msg: "call failed" });
    expect(failed!.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });
});
