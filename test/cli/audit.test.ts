/** `assignment changes` and `assignment get --version` against a real server with named tokens. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

const ADMIN = "cli-audit-admin-0123456789";
const OPERATOR = "cli-audit-operator-0123456789";

describe("assignment changes / get --version", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ tokens: parseTokenFile(`ada admin ${ADMIN}\nopal operator ${OPERATOR}\n`) });
  });
  afterAll(async () => t?.stop());
  const as = (token: string, ...args: string[]) => cliOk(t.server.address, args, { env: { ASSIGNMENT_TOKEN: token } });

  it("shows who changed what (newest first, filtered), and an experiment as it was at a version", async () => {
    await as(ADMIN, "experiments", "create", "banner", "--variant", 'a:50%:{"text":"hi"}', "--variant", "b:50%");
    await as(ADMIN, "experiments", "update", "banner", "--params", 'a={"text":"hello"}');
    await as(OPERATOR, "experiments", "start", "banner");
    await as(ADMIN, "namespaces", "create", "home", "--segments", "10");

    const all = (await as(OPERATOR, "changes", "--json"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(all.map((c) => [c.rpc, c.token_name, c.object_kind, c.object_key, c.version_before, c.version_after])).toEqual([
      ["CreateNamespace", "ada", "namespace", "home", null, "1"],
      ["UpdateExperiment", "opal", "experiment", "banner", "2", "3"],
      ["UpdateExperiment", "ada", "experiment", "banner", "1", "2"],
      ["CreateExperiment", "ada", "experiment", "banner", null, "1"],
    ]);
    expect(all[1].fields).toEqual({ status: { before: "DRAFT", after: "RUNNING" } });
    expect(all[2].fields.variants.before[0].params).toEqual({ text: "hi" });
    expect(all[2].fields.variants.after[0].params).toEqual({ text: "hello" });

    const byOpal = (await as(ADMIN, "changes", "--experiment", "banner", "--token-name", "opal", "--json")).trim().split("\n");
    expect(byOpal.map((l) => JSON.parse(l).rpc)).toEqual(["UpdateExperiment"]);
    expect((await as(ADMIN, "changes", "--since", "2099-01-01T00:00:00Z")).trim()).toBe("no changes");
    expect((await as(ADMIN, "changes", "--since", "1h", "--limit", "1", "--json")).trim().split("\n")).toHaveLength(1);
    const text = await as(ADMIN, "changes", "--experiment", "banner");
    expect(text).toMatch(/opal \(operator\)\s+UpdateExperiment\s+experiment banner\s+v2→v3\n\s+status: "DRAFT" → "RUNNING"/);

    const v1 = JSON.parse(await as(OPERATOR, "get", "banner", "--version", "1", "--json"));
    expect([v1.version, v1.status ?? "EXPERIMENT_STATUS_UNSPECIFIED", v1.variants[0].params]).toEqual([
      "1",
      "EXPERIMENT_STATUS_DRAFT",
      { text: "hi" },
    ]);
    const now = JSON.parse(await as(OPERATOR, "experiments", "show", "banner", "--json"));
    expect([now.version, now.status, now.variants[0].params]).toEqual(["3", "EXPERIMENT_STATUS_RUNNING", { text: "hello" }]);

    const missing = await runCli(t.server.address, ["get", "banner", "--version", "7"], { env: { ASSIGNMENT_TOKEN: OPERATOR } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/NOT_FOUND.*never had version 7/);
    const bad = await runCli(t.server.address, ["changes", "--since", "yesterday"], { env: { ASSIGNMENT_TOKEN: OPERATOR } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since/);

    // Holdouts (and cohorts, jobs, schedules) have their own filter, as experiments do.
    await as(ADMIN, "holdouts", "create", "hold-all", "--share", "5%");
    const held = (await as(ADMIN, "changes", "--holdout", "hold-all", "--json")).trim().split("\n");
    expect(held.map((l) => [JSON.parse(l).rpc, JSON.parse(l).object_kind, JSON.parse(l).object_key])).toEqual([
      ["CreateHoldout", "holdout", "hold-all"],
    ]);
    expect((await as(ADMIN, "changes", "--holdout", "banner")).trim()).toBe("no changes");
    const two = await runCli(t.server.address, ["changes", "--experiment", "banner", "--holdout", "hold-all"], {
      env: { ASSIGNMENT_TOKEN: OPERATOR },
    });
    expect(two.code).toBe(2);
    expect(two.stderr).toContain("--experiment, --holdout: give one of them");
  });
});
