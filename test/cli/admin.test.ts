/** The CLI's administration commands against a real server, checked through the gRPC client. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ExperimentStatus, Reason, columnAnswers } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

describe("assignment experiments / namespaces / overrides / assign / stats", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());
  const cli = (...args: string[]) => cliOk(t.server.address, args);

  it("creates, lists, shows, changes, starts, pauses and stops an experiment", async () => {
    const created = JSON.parse(
      await cli(
        "experiments",
        "create",
        "checkout",
        "--variant",
        "control:50%",
        "--variant",
        'green:5000:{"color":"#0a0"}',
        "--rollout",
        "20%",
        "--tag",
        "web",
        "--json",
      ),
    );
    expect(created).toMatchObject({ key: "checkout", status: "EXPERIMENT_STATUS_DRAFT", rollout: 2000, tags: ["web"] });
    const { experiment } = await t.experiments.getExperiment({ key: "checkout" });
    expect(experiment!.variants.map((v) => [v.key, v.weight, v.params])).toEqual([
      ["control", 5000, undefined],
      ["green", 5000, { color: "#0a0" }],
    ]);

    expect(await cli("experiments", "list")).toMatch(/^checkout\s+DRAFT\s+user_id\s+control 50\.00%, green 50\.00%\s+20\.00%/m);
    expect(await cli("exp", "show", "checkout")).toMatch(/rollout\s+20\.00% \(2000 basis points\)/);

    await cli(
      "experiments",
      "update",
      "checkout",
      "--weight",
      "control=60%",
      "--weight",
      "green=40%",
      "--add-variant",
      "blue:0",
      "--description",
      "new copy",
    );
    let e = (await t.experiments.getExperiment({ key: "checkout" })).experiment!;
    expect(e.variants.map((v) => [v.key, v.weight])).toEqual([
      ["control", 6000],
      ["green", 4000],
      ["blue", 0],
    ]);
    expect(e.description).toBe("new copy");

    expect(await cli("experiments", "start", "checkout")).toContain("checkout: DRAFT -> RUNNING");
    expect(await cli("experiments", "pause", "checkout")).toContain("RUNNING -> PAUSED");
    expect(await cli("experiments", "stop", "checkout", "--winner", "green")).toContain("PAUSED -> STOPPED (winner green)");
    e = (await t.experiments.getExperiment({ key: "checkout" })).experiment!;
    expect([e.status, e.winner]).toEqual([ExperimentStatus.STOPPED, "green"]);

    // Archived: hidden from the list unless --archived, shown as such; unarchived again.
    expect(await cli("experiments", "archive", "checkout")).toMatch(/^checkout: archived \(version \d+\); it answers UNKNOWN_EXPERIMENT/);
    expect(await cli("experiments", "list")).not.toMatch(/^checkout\s/m);
    expect(await cli("experiments", "list", "--archived")).toMatch(/^checkout\s+STOPPED \(winner green\), archived\s/m);
    expect(await cli("exp", "show", "checkout")).toMatch(/status\s+STOPPED, archived \d{4}-\d\d-\d\dT.*UNKNOWN_EXPERIMENT/);
    expect(JSON.parse(await cli("assign", "checkout", "u-1", "--json", "--allow-unknown"))).toMatchObject({
      reason: "REASON_UNKNOWN_EXPERIMENT",
    });
    const again = await runCli(t.server.address, ["experiments", "create", "checkout", "--variant", "a:100%"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/ALREADY_EXISTS.*archived/);
    expect(await cli("experiments", "unarchive", "checkout")).toContain("checkout: unarchived (STOPPED");
    expect(await cli("experiments", "list")).toMatch(/^checkout\s+STOPPED/m);

    // A stale --version is refused by the server: ABORTED, exit code 1.
    const stale = await runCli(t.server.address, ["experiments", "update", "checkout", "--rollout", "5000", "--version", "1"]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/error: ABORTED \(gRPC status 10\): version: experiment "checkout" is at version \d+, not 1/);
  });

  it("manages namespaces and segments", async () => {
    await cli("namespaces", "create", "pricing", "--segments", "100");
    for (const key of ["price-a", "price-b"])
      await cli("experiments", "create", key, "--variant", "x:50%", "--variant", "y:50%", "--start");
    await cli("namespaces", "allocate", "pricing", "price-a", "30");
    await cli("ns", "allocate", "pricing", "price-b", "50");
    expect(await cli("namespaces", "show", "pricing")).toMatch(
      /segments\s+100 \(20 free\)[\s\S]*price-a\s+30\s+30\.00%[\s\S]*price-b\s+50\s+50\.00%/,
    );
    expect(await cli("namespaces", "list")).toMatch(/pricing\s+user_id\s+100\s+20\s+price-a \(30\), price-b \(50\)/);
    expect(await cli("namespaces", "release", "pricing", "price-a")).toContain("released 30 segments");
    const { namespace } = await t.experiments.getNamespace({ key: "pricing" });
    expect(namespace!.freeSegments).toBe(50);
    // A namespace with experiments that are not archived stays; archived, it leaves the list.
    const refused = await runCli(t.server.address, ["namespaces", "archive", "pricing"]);
    expect([refused.code, refused.stderr]).toEqual([1, expect.stringMatching(/FAILED_PRECONDITION.*price-a, price-b/)]);
    await cli("namespaces", "create", "old-space", "--segments", "10");
    expect(await cli("ns", "archive", "old-space")).toContain("old-space: archived");
    expect(await cli("namespaces", "list")).not.toContain("old-space");
    expect(await cli("namespaces", "list", "--archived")).toMatch(/^old-space \(archived\)\s+user_id\s+10/m);
    expect(await cli("namespaces", "show", "old-space")).toMatch(/archived\s+yes/);
    expect(await cli("ns", "unarchive", "old-space")).toContain("old-space: unarchived");
    const full = await runCli(t.server.address, ["namespaces", "allocate", "pricing", "price-a", "51"]);
    expect(full.code).toBe(1);
    expect(full.stderr).toContain("RESOURCE_EXHAUSTED");
  });

  it("sets and clears overrides, assigns one unit, shows stats with the sample-ratio verdict", async () => {
    await cli("experiments", "create", "banner", "--variant", "a:50%", "--variant", "b:50%", "--start");
    expect(await cli("overrides", "set", "banner", "tester-1=b", "tester-2=a")).toContain("2 overrides set");
    const one = JSON.parse(await cli("assign", "banner", "tester-1", "--json"));
    expect(one).toMatchObject({ experimentKey: "banner", variantKey: "b", reason: "REASON_OVERRIDE", enrolled: true });
    // Listed a page at a time (one override a page here), as one table.
    const listed = await cli("overrides", "list", "banner", "--page-size", "1");
    expect(listed).toMatch(/^EXPERIMENT\s+UNIT\s+VARIANT\s+VERSION\s+SET$/m);
    expect(listed).toMatch(/^banner\s+tester-1\s+b\s+\d+\s+\d{4}-\d\d-\d\dT/m);
    expect(listed).toMatch(/^banner\s+tester-2\s+a\s+\d+\s/m);
    const lines = (await cli("overrides", "list", "--json"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.experimentKey === "banner").map((l) => [l.unitId, l.variantKey])).toEqual([
      ["tester-1", "b"],
      ["tester-2", "a"],
    ]);
    expect(await cli("overrides", "clear", "banner", "--all")).toContain("2 overrides removed");
    expect(await cli("overrides", "list", "banner")).toContain("no overrides");
    const plain = await cli("assign", "banner", "tester-1", "--explain");
    expect(plain).toMatch(/^banner \/ tester-1: [ab]\nreason\s+NEW/);
    expect(plain).toMatch(/buckets\s+variant \d+, rollout \d+/);
    // A new assignment was computed (hashed) by this call; asked again, a cache answers.
    expect(plain).toMatch(/^layer\s+COMPUTED \(hashed now, per SPEC\.md\)$/m);
    expect(await cli("assign", "banner", "tester-1", "--explain")).toMatch(/^layer\s+(MEMORY|REDIS|POSTGRES) \(/m);

    // A misspelt experiment: said on stderr, exit code 2; --allow-unknown makes it an answer.
    const typo = await runCli(t.server.address, ["assign", "baner", "tester-1"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('error: no experiment "baner" on this server');
    expect(typo.stdout).toContain("UNKNOWN_EXPERIMENT");
    const allowed = await runCli(t.server.address, ["assign", "baner", "tester-1", "--allow-unknown"]);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stderr).toBe("");

    await t.assignments.bulkAssign({ experimentKey: "banner", unitIds: Array.from({ length: 2_000 }, (_, i) => `u-${i}`) });
    const stats = await cli("stats", "banner");
    expect(stats).toMatch(/^VARIANT\s+EXPECTED\s+OBSERVED\s+UNITS\s+OVERRIDES\s+IMPORTED$/m);
    expect(stats).toMatch(/^a\s+50\.00%\s+\d+\.\d\d%\s+[\d,]+\s+0\s+0$/m);
    expect(stats).toContain("units stored by hashing: 2,001");
    expect(stats).toMatch(/OK: no sample-ratio mismatch \(p = [\d.]+ >= 0\.001\)/);

    expect((await runCli(t.server.address, ["stats", "banner", "--fail-on-srm"])).code).toBe(0);

    // Weights changed under stored units: the stored 50/50 split no longer matches 90/10.
    await cli("experiments", "update", "banner", "--weight", "a=90%", "--weight", "b=10%");
    const srm = await runCli(t.server.address, ["stats", "banner", "--fail-on-srm"]);
    expect(srm.stdout).toMatch(/SAMPLE RATIO MISMATCH: p = \S+ < 0\.001/);
    expect(srm.code).toBe(3);
    const json = JSON.parse(await cli("stats", "banner", "--json"));
    expect(json).toMatchObject({ experimentKey: "banner", totalUnits: "2001", sampleRatioMismatch: true });
    expect((await t.assignments.assign({ experimentKey: "banner", unitId: "tester-1" })).assignment!.reason).toBe(Reason.STICKY);
  });

  it("erase: removes the units' stored assignments and overrides (ids from arguments and a file), printing counts, never the ids", async () => {
    await t.experiments.createExperiment({
      key: "cli-erase",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const ids = ["erase-me-1", "erase-me-2", "erase-me-3", "keep-me"];
    await t.assignments.bulkAssign({ experimentKey: "cli-erase", unitIds: ids });
    await t.experiments.setOverrides({ experimentKey: "cli-erase", overrides: [{ unitId: "erase-me-3", variantKey: "a" }] });
    const dir = mkdtempSync(path.join(tmpdir(), "cli-erase-"));
    try {
      const file = path.join(dir, "ids.txt");
      writeFileSync(file, "erase-me-2\nerase-me-3\n");
      const out = await cli("erase", "erase-me-1", "--file", file);
      // erase-me-3's override lives apart from its stored assignment: both go.
      expect(out.trim()).toBe("3 units erased: 3 stored assignments and 1 override removed");
      expect(out).not.toContain("erase-me");
      const after = await t.assignments.bulkAssign({ experimentKey: "cli-erase", unitIds: ids });
      expect(columnAnswers(after.column!).map((a) => a.reason)).toEqual([Reason.NEW, Reason.NEW, Reason.NEW, Reason.STICKY]);
      expect(JSON.parse(await cli("erase", "--json", "--unit-type", "user_id", "nobody"))).toEqual({
        units: 1,
        assignments: 0,
        overrides: 0,
      });
      const none = await runCli(t.server.address, ["erase"]);
      expect([none.code, none.stderr]).toEqual([2, expect.stringContaining("name the units to erase, or give --file")]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reports errors with the gRPC status and exit code 1, bad usage with exit code 2", async () => {
    const missing = await runCli(t.server.address, ["experiments", "show", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('error: NOT_FOUND (gRPC status 5): key: no experiment "nope"');

    const badVariant = await runCli(t.server.address, ["experiments", "create", "x", "--variant", "control"]);
    expect(badVariant.code).toBe(2);
    expect(badVariant.stderr).toContain('--variant: "control" is not key:weight');

    const unknown = await runCli(t.server.address, ["experiments", "frobnicate"]);
    expect(unknown.code).toBe(2);

    const badTimeout = await runCli(t.server.address, ["--timeout", "soon", "experiments", "list"]);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toContain('--timeout: "soon" is not a duration');
  });
  it("--target sets, shows, changes and removes a targeting condition; assign --attributes --explain names rule 8", async () => {
    const created = JSON.parse(
      await cli(
        "experiments",
        "create",
        "geo",
        "--variant",
        "off:50%",
        "--variant",
        "on:50%",
        "--target",
        'attributes.country == "US"',
        "--start",
        "--json",
      ),
    );
    expect(created.condition).toBe('attributes.country == "US"');
    expect(await cli("get", "geo")).toMatch(/^targeting\s+attributes\.country == "US"$/m);
    const miss = await cli("assign", "geo", "g-1", "--attributes", '{"country":"FR"}', "--explain");
    expect(miss).toMatch(/^geo \/ g-1: off\nreason\s+NOT_TARGETED/);
    expect(miss).toMatch(/^rule\s+8 \(the targeting condition is not true for its attributes\)$/m);
    expect(await cli("assign", "geo", "g-2", "--attributes", '{"country":"US"}', "--explain")).toMatch(/^rule\s+11 \(hashed now\)$/m);

    await cli("experiments", "update", "geo", "--target", "attributes.tier == 'gold'");
    expect((await t.experiments.getExperiment({ key: "geo" })).experiment!.condition).toBe("attributes.tier == 'gold'");
    // Refused by the server: exit 1, the field and position named, nothing changed.
    const bad = await runCli(t.server.address, ["experiments", "update", "geo", "--target", "attributes.tier =="]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT.*condition: does not parse as CEL at line 1, column \d+/);
    await cli("experiments", "update", "geo", "--target", "");
    const e = (await t.experiments.getExperiment({ key: "geo" })).experiment!;
    expect([e.condition, e.version]).toEqual(["", 3n]);
    expect(await cli("get", "geo")).toMatch(/^targeting\s+- \(every unit\)$/m);
    // Not JSON: a usage error (exit 2) before any call.
    expect((await runCli(t.server.address, ["assign", "geo", "g-3", "--attributes", "country=US"])).code).toBe(2);
  });
});

describe("assignment with tokens", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ adminToken: "admin-secret-1", assignToken: "assign-secret-1" });
  });
  afterAll(async () => t?.stop());

  it("sends --token or ASSIGNMENT_TOKEN as a bearer token; none or a wrong one is UNAUTHENTICATED (exit 1)", async () => {
    const none = await runCli(t.server.address, ["experiments", "list"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("error: UNAUTHENTICATED (gRPC status 16)");
    // An empty ASSIGNMENT_TOKEN (a blank line of an env file) is no token, not a malformed one.
    const empty = await runCli(t.server.address, ["experiments", "list"], { env: { ASSIGNMENT_TOKEN: "" } });
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("error: UNAUTHENTICATED (gRPC status 16)");
    const wrong = await runCli(t.server.address, ["--token", "admin-secret-2", "experiments", "list"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("UNAUTHENTICATED");

    expect(
      await cliOk(t.server.address, ["--token", "admin-secret-1", "experiments", "create", "e", "--variant", "a:100%", "--start"]),
    ).toContain("key              e");
    const viaEnv = await cliOk(t.server.address, ["assign", "e", "u-1"], { env: { ASSIGNMENT_TOKEN: "assign-secret-1" } });
    expect(viaEnv).toContain("e / u-1: a");
    const assignWithAdmin = await cliOk(t.server.address, ["-t", "admin-secret-1", "assign", "e", "u-2"]);
    expect(assignWithAdmin).toContain("e / u-2: a");
  });
});
