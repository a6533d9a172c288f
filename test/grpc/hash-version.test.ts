import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { eventually, sql } from "./helpers.js";

// SPEC: a future hash version must never change the answers of experiments created under an older
// one; conversely, a server must not answer an experiment of a version it cannot compute.
describe("hash versions", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  it("an experiment of an unknown hash version is not served, one of version 1 is", async () => {
    const variants = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "v1", variants, status: ExperimentStatus.RUNNING });
    await t.experiments.createExperiment({ key: "future", variants, status: ExperimentStatus.RUNNING });
    // As a newer server would have made it; NOTIFY makes this server reload its configuration.
    await sql(t.databaseUrl, `UPDATE experiments SET hash_version = 2 WHERE key = 'future'`);
    await sql(t.databaseUrl, `UPDATE config_epoch SET epoch = epoch + 1 RETURNING pg_notify('assignment_config', epoch::text)`);
    // Polled as a dry run, so that calls made before the reload store nothing.
    const unknown = async () =>
      (await t.assignments.assign({ experimentKey: "future", unitId: "u-1", options: { dryRun: true } })).assignment?.reason ===
      Reason.UNKNOWN_EXPERIMENT;
    expect(await eventually(unknown, 3_000)).toBe(true);
    const real = (await t.assignments.assign({ experimentKey: "future", unitId: "u-1" })).assignment!;
    expect([real.reason, real.variantKey, real.stored]).toEqual([Reason.UNKNOWN_EXPERIMENT, "", false]);
    expect(
      await sql(t.databaseUrl, `SELECT 1 FROM assignments a JOIN experiments e ON e.id = a.experiment_id WHERE e.key = 'future'`),
    ).toEqual([]);
    const ok = (await t.assignments.assign({ experimentKey: "v1", unitId: "u-1" })).assignment!;
    expect(ok.reason).toBe(Reason.NEW);
  });
});
