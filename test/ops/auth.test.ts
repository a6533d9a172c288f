/** Bearer tokens: ExperimentService demands ADMIN_TOKEN, AssignmentService ASSIGN_TOKEN (or the admin one). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus } from "../../src/client/index.js";
import { expectFailure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const ADMIN = "admin-token-0123456789";
const ASSIGN = "assign-token-0123456789";

describe("authentication", () => {
  let t: TestServer;
  const clients: { close(): void }[] = [];
  const admin = (token?: string) => {
    const c = createClient(ExperimentService, t.server.address, { token, timeoutMs: 10_000, retry: false });
    clients.push(c);
    return c;
  };
  const assign = (token?: string) => {
    const c = createClient(AssignmentService, t.server.address, { token, timeoutMs: 10_000, retry: false });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    t = await startTestServer({ adminToken: ADMIN, assignToken: ASSIGN });
  });
  afterAll(async () => {
    clients.forEach((c) => c.close());
    await t?.stop();
  });

  it("refuses admin calls without a token or with a wrong one (UNAUTHENTICATED), and serves the right one", async () => {
    const request = { key: "guarded", variants: [{ key: "a", weight: 10_000 }], status: ExperimentStatus.RUNNING };
    await expectFailure(admin().createExperiment(request), status.UNAUTHENTICATED, "authorization: Bearer <token>");
    await expectFailure(admin("wrong").createExperiment(request), status.UNAUTHENTICATED, "not valid");
    await expectFailure(admin(ADMIN.slice(0, -1)).createExperiment(request), status.UNAUTHENTICATED);
    await expectFailure(admin(ADMIN + "x").listExperiments({}), status.UNAUTHENTICATED);
    // The assignment token is not an admin token.
    await expectFailure(admin(ASSIGN).createExperiment(request), status.UNAUTHENTICATED);
    // Streaming methods are guarded too.
    await expectFailure(
      (async () => {
        for await (const _ of admin().exportAssignments({ experimentKey: "guarded" })) void _;
      })(),
      status.UNAUTHENTICATED,
    );
    // Nothing was created by the refused calls.
    const { experiments } = await admin(ADMIN).listExperiments({});
    expect(experiments).toEqual([]);

    const { experiment } = await admin(ADMIN).createExperiment(request);
    expect(experiment!.key).toBe("guarded");
    const other = createClient(ExperimentService, t.server.address, { timeoutMs: 10_000 });
    clients.push(other);
    expect((await other.getExperiment({ key: "guarded" }, { metadata: { authorization: `bearer ${ADMIN}` } })).experiment!.version).toBe(
      1n,
    );
  });

  it("refuses assignment calls without the assignment token when one is set; the admin token works too", async () => {
    await expectFailure(assign().assign({ experimentKey: "guarded", unitId: "u-1" }), status.UNAUTHENTICATED);
    await expectFailure(assign("nope").bulkAssign({ experimentKey: "guarded", unitIds: ["u-1"] }), status.UNAUTHENTICATED);
    expect((await assign(ASSIGN).assign({ experimentKey: "guarded", unitId: "u-1" })).assignment!.variantKey).toBe("a");
    expect((await assign(ADMIN).assign({ experimentKey: "guarded", unitId: "u-2" })).assignment!.variantKey).toBe("a");
  });
});

describe("authentication, assignment token unset", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ adminToken: ADMIN });
  });
  afterAll(async () => t?.stop());

  it("leaves AssignmentService open and still guards ExperimentService", async () => {
    await expectFailure(t.experiments.listExperiments({}), status.UNAUTHENTICATED);
    const r = await t.assignments.assign({ experimentKey: "unknown", unitId: "u-1" });
    expect(r.assignment!.variantKey).toBe("");
  });
});
