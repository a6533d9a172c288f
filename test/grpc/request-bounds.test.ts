import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus } from "assignment-client";
import { MAX_EXPERIMENT_PARAMS_BYTES, MAX_PARAMS_BYTES } from "assignment-client/limits";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectFailure, status } from "./helpers.js";

// What one request can make the server build is bounded: answers carry variant params, so params
// have size limits per variant and per experiment.
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
        variants: {
          variants: [
            { key: "a", weight: 5000 },
            { key: "b", weight: 5000, params: over },
          ],
        },
      }),
      status.INVALID_ARGUMENT,
      "variants.variants[1].params",
    );
  });

  it("refuses params of all variants together over the experiment limit", async () => {
    const big = { text: "z".repeat(MAX_PARAMS_BYTES - 11) }; // exactly MAX_PARAMS_BYTES as JSON
    const n = Math.floor(MAX_EXPERIMENT_PARAMS_BYTES / MAX_PARAMS_BYTES);
    const fits = Array.from({ length: n }, (_, i) => ({ key: `v${i}`, weight: i === 0 ? 10000 : 0, params: big }));
    await t.experiments.createExperiment({ key: "params-fit", variants: fits });
    await expectFailure(
      t.experiments.createExperiment({
        key: "params-over",
        variants: [...fits.map((v) => ({ ...v, key: `w${v.key}` })), { key: "extra", weight: 0, params: { a: 1 } }],
      }),
      status.INVALID_ARGUMENT,
      "variants[].params",
      String(MAX_EXPERIMENT_PARAMS_BYTES),
    );
  });
});
