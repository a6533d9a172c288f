import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, Layer } from "assignment-client";
import { startTestServer, type TestServer } from "../support/test-server.js";

describe("server smoke", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  it("creates, assigns, and answers the stored value from a cache the second time", async () => {
    await t.experiments.createExperiment({
      key: "smoke",
      variants: [
        { key: "a", weight: 5000 },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
    const first = await t.assignments.assign({ experimentKey: "smoke", unitId: "u-1", options: { explain: true } });
    expect(first.assignment?.reason).toBe(Reason.NEW);
    expect(first.assignment?.stored).toBe(true);
    const second = await t.assignments.assign({ experimentKey: "smoke", unitId: "u-1", options: { explain: true } });
    expect(second.assignment?.reason).toBe(Reason.STICKY);
    expect(second.assignment?.variantKey).toBe(first.assignment?.variantKey);
    expect(second.assignment?.explanation?.layer).toBe(Layer.MEMORY);
  });
});
