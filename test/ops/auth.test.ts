/**
 * Bearer tokens as ADMIN_TOKEN and ASSIGN_TOKEN give them: an admin and an assign token. A missing,
 * malformed or unknown token is UNAUTHENTICATED, and the message says which of the three it was
 * (defect 6: every one of them said "needs a token"); a known token whose role may not call the
 * method is PERMISSION_DENIED. No message repeats what the caller sent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus } from "assignment-client";
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
  /** A client sending exactly `value` as its authorization metadata. */
  const raw = (value: string) => {
    const c = admin();
    return { listExperiments: () => c.listExperiments({}, { metadata: { authorization: value } }) };
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
    // The assign token is known, but its role may not administer.
    await expectFailure(
      admin(ASSIGN).createExperiment(request),
      status.PERMISSION_DENIED,
      'assignment.v1.ExperimentService/CreateExperiment needs role admin; token "ASSIGN_TOKEN" has role assign',
    );
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

  it("says what was wrong with the token: missing, malformed (and how), or not valid, never repeating it", async () => {
    const refused = async (value: string | undefined, ...mentions: (string | RegExp)[]) => {
      const f = await expectFailure(
        value === undefined ? admin().listExperiments({}) : raw(value).listExperiments(),
        status.UNAUTHENTICATED,
        ...mentions,
      );
      expect(f.details).not.toContain(ADMIN);
      expect(f.details).not.toContain(ADMIN.slice(0, 8));
      return f.details;
    };
    // Malformed values: what is wrong with each.
    await refused(`Bearer ${ADMIN.slice(0, 8)} ${ADMIN.slice(8)}`, "malformed", "whitespace in or around the token");
    await refused(ADMIN, "malformed", 'holds no "Bearer " before the token');
    await refused(`Basic ${Buffer.from(`u:${ADMIN}`).toString("base64")}`, "malformed", "scheme other than Bearer");
    await refused("Bearer", "malformed", 'holds no token after "Bearer"');
    // Missing: said so, with how to send one.
    await refused(undefined, 'needs a token: the call carried no "authorization" metadata', "authorization: Bearer <token>");
    // A value with whitespace before or after it never reaches the server (HTTP/2 drops such a
    // header); the message for a missing token says that this is how such a token arrives.
    for (const spaced of [`Bearer ${ADMIN} `, ` Bearer ${ADMIN}`]) {
      await refused(spaced, 'no "authorization" metadata', "begins or ends with whitespace");
    }
    // Well formed, but no such token.
    await refused(`Bearer ${ADMIN}-but-longer`, "the bearer token is not valid");
    // None of these is "needs a token" but the missing one.
    expect(await refused(`Basic abc`)).not.toContain("needs a token");
    // RFC 6750 allows more than one space after the scheme, and any case of "Bearer".
    expect((await raw(`BEARER   ${ADMIN}`).listExperiments()).experiments.map((e) => e.key)).toEqual(["guarded"]);
  });

  it("the client refuses a token with whitespace around it before sending anything", () => {
    for (const token of [` ${ADMIN}`, `${ADMIN} `, `${ADMIN}\n`, "a b"]) {
      expect(() => createClient(ExperimentService, t.server.address, { token })).toThrow(/token: .*whitespace/);
    }
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
