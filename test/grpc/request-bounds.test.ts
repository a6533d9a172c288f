import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "../../src/client/index.js";
import { MAX_PARAMS_BYTES } from "../../src/service/experiment-service.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, status } from "./helpers.js";

// What one request can make the server build is bounded: params have a size limit, and a key
// repeated in one call is refused instead of repeating its answers (and params) in the response.
describe("request bounds", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    await t.experiments.createExperiment({
      key: "bounded",
      variants: [
        { key: "a", weight: 5000, params: { text: "x".repeat(100) } },
        { key: "b", weight: 5000 },
      ],
      status: ExperimentStatus.RUNNING,
    });
  });
  afterAll(async () => t?.stop());

  it("refuses params longer than the limit, naming the variant, and accepts them at the limit", async () => {
    // {"text":"…"} is 11 bytes of JSON around the string.
    const atLimit = { text: "y".repeat(MAX_PARAMS_BYTES - 11) };
    const over = { text: "y".repeat(MAX_PARAMS_BYTES - 10) };
    expect(Buffer.byteLength(JSON.stringify(atLimit))).toBe(MAX_PARAMS_BYTES);
    await t.experiments.createExperiment({ key: "at-limit", variants: [{ key: "a", weight: 10000, params: atLimit }] });
    await expectFailure(
      t.experiments.createExperiment({ key: "over-limit", variants: [{ key: "a", weight: 10000, params: over }] }),
      status.INVALID_ARGUMENT,
      "variants[0].params",
      String(MAX_PARAMS_BYTES),
    );
    const cur = (await t.experiments.getExperiment({ key: "bounded" })).experiment!;
    await expectFailure(
      t.experiments.updateExperiment({
        key: "bounded",
        version: cur.version,
        variants: { variants: [{ key: "a", weight: 5000 }, { key: "b", weight: 5000, params: over }] },
      }),
      status.INVALID_ARGUMENT,
      "variants.variants[1].params",
    );
  });

  it("refuses an experiment key repeated in one call, naming its position", async () => {
    await expectFailure(
      t.assignments.matrixAssign({ experimentKeys: ["bounded", "other", "bounded"], unitIds: ["u1"], options: { includeParams: true } }),
      status.INVALID_ARGUMENT,
      "experiment_keys[2]",
    );
    await expectFailure(
      t.assignments.assignUnit({ units: { user_id: "u1" }, experimentKeys: ["bounded", "bounded"] }),
      status.INVALID_ARGUMENT,
      "experiment_keys[1]",
    );
    // distinct keys are fine, and the params come back
    const ok = await t.assignments.matrixAssign({ experimentKeys: ["bounded", "other"], unitIds: ["u1"], options: { includeParams: true } });
    expect(ok.columns.map((c) => c.experimentKey)).toEqual(["bounded", "other"]);
    expect(ok.columns[0].legendParams[1]).toEqual({ text: "x".repeat(100) });
  });
});
