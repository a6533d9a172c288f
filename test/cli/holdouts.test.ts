/** The CLI's holdout, namespace-params and params commands against a real server, checked through
 * the gRPC client. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { specVariant } from "../grpc/helpers.js";
import { cliOk, runCli } from "./run-cli.js";

describe("assignment holdouts / namespaces --default-params / params", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());
  const cli = (...args: string[]) => cliOk(t.server.address, args);

  it("creates, shows, lists, updates a holdout and shows its stats", async () => {
    await t.experiments.createExperiment({
      key: "cli-h-e",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
      tags: ["web"],
    });
    const created = JSON.parse(await cli("holdouts", "create", "cli-h", "--share", "10%", "--tags", "web,app", "--json"));
    expect(created).toMatchObject({
      key: "cli-h",
      salt: "cli-h",
      unitType: "user_id",
      share: 1000,
      tags: ["web", "app"],
      experimentKeys: ["cli-h-e"],
    });
    expect(await cli("holdouts", "get", "cli-h")).toMatch(/share\s+10\.00% \(1000 basis points held out\)/);
    expect(await cli("holdouts", "list")).toMatch(/^cli-h\s+user_id\s+10\.00%\s+web, app\s+cli-h-e/m);
    await cli("holdouts", "update", "cli-h", "--share", "100%", "--version", "1");
    expect((await t.experiments.getHoldout({ key: "cli-h" })).holdout!.share).toBe(10_000);
    // A second writer that read version 1 is refused (ABORTED, exit 1); the share stays.
    const stale = await runCli(t.server.address, ["holdouts", "update", "cli-h", "--share", "50%", "--version", "1"]);
    expect([stale.code, stale.stderr]).toEqual([1, expect.stringContaining("ABORTED")]);
    expect(await cli("holdouts", "get", "cli-h")).toMatch(/version\s+2$/m);
    await t.assignments.bulkAssign({ experimentKey: "cli-h-e", unitIds: ["u-1", "u-2"] });
    const stats = JSON.parse(await cli("holdouts", "stats", "cli-h", "--json"));
    expect(stats).toEqual({ holdout: "cli-h", share: 10_000, experiments: [{ experiment: "cli-h-e", held_out: 2, exposed: 0 }] });
    expect(await cli("holdouts", "stats", "cli-h")).toMatch(/^cli-h-e\s+2\s+0\s+100\.00%/m);
    const bad = await runCli(t.server.address, ["holdouts", "update", "cli-h", "--share", "20000"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("--share");
  });

  it("sets a namespace's default params, changes them, and answers a unit's params", async () => {
    await cli("namespaces", "create", "cli-ns", "--segments", "10", "--default-params", '{"color":"blue","size":14}');
    expect((await t.experiments.getNamespace({ key: "cli-ns" })).namespace!.defaultParams).toEqual({ color: "blue", size: 14 });
    // jsonb keeps its own key order.
    const shown = /^default params (.*)$/m.exec(await cli("namespaces", "show", "cli-ns"));
    expect(JSON.parse(shown![1]!)).toEqual({ color: "blue", size: 14 });
    const variants = [
      { key: "a", weight: 5000, params: { color: "red" } },
      { key: "b", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "cli-ns-e", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.allocateSegments({ namespaceKey: "cli-ns", experimentKey: "cli-ns-e", segments: 10 });
    const answer = JSON.parse(await cli("params", "unit-7", "--namespace", "cli-ns", "--json"));
    const v = specVariant("unit-7", "cli-ns-e", variants);
    expect(answer).toEqual([
      {
        namespaceKey: "cli-ns",
        params: v === "a" ? { color: "red", size: 14 } : { color: "blue", size: 14 },
        experimentKey: "cli-ns-e",
        variantKey: v,
        reason: "REASON_NEW",
        enrolled: true,
        stored: true,
        experimentVersion: "2",
      },
    ]);
    expect(await cli("params", "unit-7", "--namespace", "cli-ns")).toContain(`cli-ns: cli-ns-e / ${v}, STICKY`);
    await cli("namespaces", "update", "cli-ns", "--default-params", '{"color":"green"}');
    const [again] = (await t.assignments.resolveParams({ units: { user_id: "unit-7" }, namespaceKeys: ["cli-ns"] })).namespaces;
    expect(again!.reason).toBe(Reason.STICKY);
    expect(again!.params).toEqual(v === "a" ? { color: "red" } : { color: "green" });
  });
});
