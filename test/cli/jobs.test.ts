/** `assignment jobs …` and `assignment schedules …` as their own processes against a real server. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CohortService, createClient, ExperimentStatus, JobService, JobState, type Client } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

describe("assignment jobs / schedules", () => {
  let t: TestServer;
  let jobs: Client<typeof JobService>;
  let cohorts: Client<typeof CohortService>;
  beforeAll(async () => {
    t = await startTestServer({ jobs: { chunkUnits: 500, pollingIntervalSeconds: 0.5 } });
    jobs = createClient(JobService, t.server.address, { timeoutMs: 30_000 });
    cohorts = createClient(CohortService, t.server.address, { timeoutMs: 30_000 });
    await t.experiments.createExperiment({
      key: "cli-exp",
      variants: [{ key: "a", weight: 10_000 }],
      status: ExperimentStatus.RUNNING,
      tags: ["web"],
    });
  });
  afterAll(async () => {
    jobs?.close();
    cohorts?.close();
    await t?.stop();
  });
  const cli = (...args: string[]) => cliOk(t.server.address, args);

  it("starts a job and watches it to the end; lists, shows and cancels", { timeout: 180_000 }, async () => {
    const ids = Array.from({ length: 3_000 }, (_, i) => `cj-${i}`).join("\n");
    await cliOk(t.server.address, ["cohorts", "upload", "cli-cohort"], { stdin: ids });
    const out = await cli("jobs", "start", "assign", "--cohort", "cli-cohort", "--tag", "web", "--watch");
    const id = /^job ([0-9a-f-]{36}): done, assign cli-cohort × cli-exp, 3,000 \/ 3,000 units, 3,000 enrolled$/m.exec(out)?.[1];
    expect(id, out).toBeDefined();
    expect((await jobs.getJob({ id: id! })).job?.state).toBe(JobState.DONE);
    expect(await cli("jobs", "list")).toContain(id!);
    expect(await cli("jobs", "show", id!)).toMatch(/state\s+done/);
    // watch of a finished job prints it and ends at once
    expect(await cli("jobs", "watch", id!)).toContain(`job ${id}: done`);
    const started = (await cli("jobs", "start", "warm", "--cohort", "cli-cohort", "--experiment", "cli-exp")).trim();
    expect(started).toMatch(/^[0-9a-f-]{36}$/);
    await cli("jobs", "cancel", started);
    const after = (await jobs.getJob({ id: started })).job!;
    expect([JobState.CANCELLED, JobState.DONE]).toContain(after.state);
    const bad = await runCli(t.server.address, ["jobs", "start", "assign", "--cohort", "nope", "--tag", "web"]);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining('NOT_FOUND (gRPC status 5): spec.cohort: no cohort "nope"')]);
    const usage = await runCli(t.server.address, ["jobs", "start", "move", "--cohort", "cli-cohort", "--tag", "web"]);
    expect([usage.code, usage.stderr]).toEqual([2, expect.stringContaining('kind: "move" is not assign, warm, migrate or import')]);
  });

  it("passes --attributes to an assign job: the targeting condition sees them on every unit", { timeout: 180_000 }, async () => {
    await t.experiments.createExperiment({
      key: "cli-targeted",
      variants: [{ key: "a", weight: 10_000 }],
      status: ExperimentStatus.RUNNING,
      condition: 'attributes.country == "US"',
    });
    const ids = Array.from({ length: 1_200 }, (_, i) => `ct-${i}`).join("\n");
    await cliOk(t.server.address, ["cohorts", "upload", "cli-targeted-cohort"], { stdin: ids });
    // Without attributes the condition is false for every unit: none enrolled.
    const none = await cli("jobs", "start", "assign", "--cohort", "cli-targeted-cohort", "--experiment", "cli-targeted", "--watch");
    expect(none).toMatch(/: done, assign cli-targeted-cohort × cli-targeted, 1,200 \/ 1,200 units, 0 enrolled$/m);
    const us = await cli(
      "jobs",
      "start",
      "assign",
      "--cohort",
      "cli-targeted-cohort",
      "--experiment",
      "cli-targeted",
      "--attributes",
      '{"country":"US"}',
      "--watch",
    );
    const id = /^job ([0-9a-f-]{36}): done, assign cli-targeted-cohort × cli-targeted, 1,200 \/ 1,200 units, 1,200 enrolled$/m.exec(
      us,
    )?.[1];
    expect(id, us).toBeDefined();
    const job = (await jobs.getJob({ id: id! })).job!;
    expect(job.spec?.attributes).toEqual({ country: "US" });
    const bad = await runCli(t.server.address, [
      "jobs",
      "start",
      "assign",
      "--cohort",
      "cli-targeted-cohort",
      "--tag",
      "web",
      "--attributes",
      "[1]",
    ]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining("--attributes: must be a JSON object")]);
    const wrongKind = await runCli(t.server.address, [
      "jobs",
      "start",
      "import",
      "--cohort",
      "cli-cohort",
      "--target",
      "cli-exp",
      "--attributes",
      "{}",
    ]);
    expect([wrongKind.code, wrongKind.stderr]).toEqual([
      2,
      expect.stringContaining("--attributes: only for assign and warm jobs (not import)"),
    ]);
  });

  it(
    "uploads per-unit attributes from a JSON-lines file: an assign job enrols the units whose own attributes match",
    { timeout: 180_000 },
    async () => {
      await t.experiments.createExperiment({
        key: "cli-targeted-file",
        variants: [{ key: "a", weight: 10_000 }],
        status: ExperimentStatus.RUNNING,
        condition: 'attributes.country == "US"',
      });
      // 1,000 units: every fourth in the US (250), the others in FR or with no attributes.
      const lines = Array.from({ length: 1_000 }, (_, i) =>
        JSON.stringify(
          i % 4 === 0
            ? { unit_id: `cf-${i}`, attributes: { country: "US" } }
            : i % 2 === 0
              ? { unit_id: `cf-${i}`, attributes: { country: "FR" } }
              : { unit_id: `cf-${i}` },
        ),
      );
      await cliOk(t.server.address, ["cohorts", "upload", "cli-file-cohort", "--jsonl"], { stdin: lines.join("\n") + "\n" });
      expect((await cohorts.getCohort({ name: "cli-file-cohort" })).cohort).toMatchObject({ size: 1_000n, hasAttributes: true });
      const out = await cli("jobs", "start", "assign", "--cohort", "cli-file-cohort", "--experiment", "cli-targeted-file", "--watch");
      expect(out).toMatch(/: done, assign cli-file-cohort × cli-targeted-file, 1,000 \/ 1,000 units, 250 enrolled$/m);
      // A bad line names itself and stores nothing.
      for (const [stdin, message] of [
        ['{"unit_id":"x"}\n{"unit_id":"y"\n', "line 2: not JSON"],
        ['{"unit_id":"x","attributes":[1]}\n', "line 1: attributes must be a JSON object"],
        ['{"unit":"x"}\n', 'line 1: unknown field "unit"'],
        ['{"unit_id":"x","variant_key":"a"}\n', "line 1: variant_key is only for --variants"],
      ] as const) {
        const bad = await runCli(t.server.address, ["cohorts", "upload", "cli-bad-file", "--jsonl"], { stdin });
        expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining(message)]);
      }
      expect((await cohorts.listCohorts({})).cohorts.map((c) => c.name)).not.toContain("cli-bad-file");
    },
  );

  it("creates, lists and deletes schedules; a bad cron is refused naming it", async () => {
    await cli("schedules", "create", "nightly", "assign", "--cron", "0 3 * * *", "--cohort", "cli-cohort", "--tag", "web");
    expect(await cli("schedules", "list")).toMatch(/^nightly\s+0 3 \* \* \*\s+UTC\s+assign cli-cohort × tag web/m);
    const bad = await runCli(t.server.address, [
      "schedules",
      "create",
      "broken",
      "assign",
      "--cron",
      "soon",
      "--cohort",
      "cli-cohort",
      "--tag",
      "web",
    ]);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining("INVALID_ARGUMENT (gRPC status 3): schedule.cron: does not parse")]);
    await cli("schedules", "delete", "nightly");
    expect((await jobs.listSchedules({})).schedules).toEqual([]);
  });
});
