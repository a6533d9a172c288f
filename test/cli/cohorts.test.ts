/** `assignment cohorts …` as its own process against a real server, checked through the gRPC client. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CohortService, createClient, type Client } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { cliOk, runCli } from "./run-cli.js";

describe("assignment cohorts", () => {
  let t: TestServer;
  let cohorts: Client<typeof CohortService>;
  let dir: string;
  beforeAll(async () => {
    t = await startTestServer();
    cohorts = createClient(CohortService, t.server.address, { timeoutMs: 30_000 });
    dir = mkdtempSync(path.join(tmpdir(), "cohorts-cli-"));
  });
  afterAll(async () => {
    cohorts?.close();
    rmSync(dir, { recursive: true, force: true });
    await t?.stop();
  });
  const cli = (...args: string[]) => cliOk(t.server.address, args);

  it("uploads a file (repeats dropped), lists, shows, exports and deletes", async () => {
    const ids = Array.from({ length: 23_456 }, (_, i) => `cli-${i}`);
    const file = path.join(dir, "ids.txt");
    writeFileSync(file, [...ids, ...ids.slice(0, 100)].join("\n") + "\n");
    expect(await cli("cohorts", "upload", "launch", file, "--unit-type", "device_id")).toContain(
      "cohort launch: 23,456 ids (23,556 received, 100 repeats dropped)",
    );
    const { cohort } = await cohorts.getCohort({ name: "launch" });
    expect([cohort?.size, cohort?.unitType, cohort?.createdBy]).toEqual([23_456n, "device_id", "anonymous"]);
    expect(await cli("cohorts", "list")).toMatch(/^launch\s+device_id\s+23,456/m);
    expect(JSON.parse(await cli("cohorts", "show", "launch", "--json"))).toMatchObject({ name: "launch", size: "23456" });
    const out = path.join(dir, "out.txt");
    await cli("cohorts", "export", "launch", "--output", out);
    expect(readFileSync(out, "utf8")).toBe(ids.join("\n") + "\n");
    // stdin works too
    await cliOk(t.server.address, ["cohorts", "upload", "tiny"], { stdin: "a\nb\na\n" });
    expect((await cohorts.getCohort({ name: "tiny" })).cohort?.size).toBe(2n);
    await cli("cohorts", "delete", "launch");
    const gone = await runCli(t.server.address, ["cohorts", "show", "launch"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("NOT_FOUND");
    expect(gone.stderr).toContain('no cohort "launch"');
  });
});
