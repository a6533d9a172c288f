/**
 * The role table and the interceptor, without sockets: the interceptor is a function of the
 * method's descriptor and the request headers, so any transport (grpc-js metadata, HTTP headers)
 * gets the same answers; here it is fed the Fetch API's Headers, as an HTTP transport would.
 */
import { readFileSync } from "node:fs";
import type { DescMethod } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AssignmentService } from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import { CohortService } from "../../gen/ts/assignment/v1/cohort_service_pb.js";
import { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { JobService } from "../../gen/ts/assignment/v1/job_service_pb.js";
import { Code, ServiceError } from "../../src/errors.js";
import { authenticator, parseAuthorization, TokenSet, tokenDigest } from "../../src/ops/auth.js";
import { ANONYMOUS, METHOD_ROLES, methodKey, ROLES, rolesFor } from "../../src/service/roles.js";

const services = [AssignmentService, ExperimentService, CohortService, JobService];

describe("METHOD_ROLES", () => {
  it("names every method of both services, and nothing else; admin may call each", () => {
    const methods = services.flatMap((s) => s.methods.map(methodKey));
    expect(
      methods.filter((m) => !(m in METHOD_ROLES)),
      "methods the role table does not name",
    ).toEqual([]);
    expect(
      Object.keys(METHOD_ROLES).filter((k) => !methods.includes(k)),
      "table entries of no method",
    ).toEqual([]);
    for (const [key, roles] of Object.entries(METHOD_ROLES)) expect(roles, key).toContain("admin");
  });

  it("fails closed: a method the table does not name is for admin alone", () => {
    const unknown = { ...ExperimentService.methods[0]!, name: "DropEverything", parent: ExperimentService } as DescMethod;
    expect(rolesFor(unknown)).toEqual(["admin"]);
    const tokens = new TokenSet(ROLES.map((role) => ({ name: `${role}-1`, role, digest: tokenDigest(`${role}-token-0123456789`) })));
    const check = authenticator({ open: new Set(), tokens: () => tokens });
    expect(check(unknown, new Headers({ authorization: "Bearer admin-token-0123456789" }))).toEqual({ name: "admin-1", role: "admin" });
    expect(() => check(unknown, new Headers({ authorization: "Bearer operator-token-0123456789" }))).toThrow(
      'assignment.v1.ExperimentService/DropEverything needs role admin; token "operator-1" has role operator',
    );
  });

  it("is the README's role table", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const header = readme.split("\n").find((l) => /^\| RPC \| admin \| operator \| reader \| assign \|/.test(l));
    expect(header, "README: a table | RPC | admin | operator | reader | assign |").toBeDefined();
    for (const [key, roles] of Object.entries(METHOD_ROLES)) {
      const rpc = key.replace(/^assignment\.v1\./, "");
      const row = readme.split("\n").find((l) => l.startsWith(`| \`${rpc}\` |`));
      expect(row, `README role table row of ${rpc}`).toBeDefined();
      const marks = row!
        .split("|")
        .slice(2, 6)
        .map((c) => c.trim() !== "");
      expect(marks, rpc).toEqual(["admin", "operator", "reader", "assign"].map((r) => roles.includes(r as never)));
    }
  });
});

describe("parseAuthorization", () => {
  it.each([
    [null, { kind: "missing" }],
    ["Bearer abc", { kind: "bearer", token: "abc" }],
    ["bearer   abc", { kind: "bearer", token: "abc" }],
    ["", { kind: "malformed", problem: "is empty" }],
    ["abc", { kind: "malformed", problem: 'holds no "Bearer " before the token' }],
    ["Basic abc", { kind: "malformed", problem: "uses an authentication scheme other than Bearer" }],
    ["Bearer", { kind: "malformed", problem: 'holds no token after "Bearer"' }],
    ["Bearer ", { kind: "malformed", problem: 'holds no token after "Bearer"' }],
    ["Bearer\tabc", { kind: "malformed", problem: 'holds no space between "Bearer" and the token' }],
    [
      "Bearer abc ",
      { kind: "malformed", problem: "holds whitespace in or around the token (a token is one word, with nothing around it)" },
    ],
    [
      "Bearer a bc",
      { kind: "malformed", problem: "holds whitespace in or around the token (a token is one word, with nothing around it)" },
    ],
    [" Bearer abc", { kind: "malformed", problem: 'starts with whitespace instead of "Bearer"' }],
    ["Bearer abc\u00e9", { kind: "malformed", problem: "holds characters a token cannot have (printable ASCII only)" }],
  ])("%j", (value, expected) => {
    expect(parseAuthorization(value)).toEqual(expected);
  });
});

describe("the interceptor over HTTP headers", () => {
  const tokens = new TokenSet([
    { name: "ops", role: "operator", digest: tokenDigest("ops-token-0123456789") },
    { name: "web", role: "assign", digest: tokenDigest("web-token-0123456789") },
  ]);
  const method = (service: typeof AssignmentService | typeof ExperimentService, name: string) =>
    service.methods.find((m) => m.name === name)!;
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      if (err instanceof ServiceError) return [err.code, err.message];
    }
    return "accepted";
  };

  it("returns the caller of a known token whose role may call; refuses the others with what was wrong", () => {
    const check = authenticator({ open: new Set(), tokens: () => tokens });
    const set = method(ExperimentService, "SetOverrides");
    expect(check(set, new Headers({ authorization: "Bearer ops-token-0123456789" }))).toEqual({ name: "ops", role: "operator" });
    expect(refusal(() => check(set, new Headers()))).toEqual([
      Code.Unauthenticated,
      expect.stringContaining('carried no "authorization" metadata'),
    ]);
    expect(refusal(() => check(set, new Headers({ authorization: "Token ops-token-0123456789" })))).toEqual([
      Code.Unauthenticated,
      expect.stringContaining("malformed: it uses an authentication scheme other than Bearer"),
    ]);
    expect(refusal(() => check(set, new Headers({ authorization: "Bearer ops-token-012345678" })))).toEqual([
      Code.Unauthenticated,
      expect.stringContaining("the bearer token is not valid"),
    ]);
    expect(refusal(() => check(set, new Headers({ authorization: "Bearer web-token-0123456789" })))).toEqual([
      Code.PermissionDenied,
      'assignment.v1.ExperimentService/SetOverrides needs role admin or operator; token "web" has role assign',
    ]);
    expect(
      refusal(() => check(method(AssignmentService, "Assign"), new Headers({ authorization: "Bearer ops-token-0123456789" }))),
    ).toEqual([Code.PermissionDenied, 'assignment.v1.AssignmentService/Assign needs role admin or assign; token "ops" has role operator']);
  });

  it("an open service takes every call as anonymous, whatever token it carries", () => {
    const check = authenticator({ open: new Set([AssignmentService.typeName]), tokens: () => tokens });
    const assign = method(AssignmentService, "Assign");
    expect(check(assign, new Headers())).toBe(ANONYMOUS);
    expect(check(assign, new Headers({ authorization: "Bearer nobody" }))).toBe(ANONYMOUS);
    expect(refusal(() => check(method(ExperimentService, "GetExperiment"), new Headers()))).toEqual([
      Code.Unauthenticated,
      expect.any(String),
    ]);
  });

  it("sees the tokens of the moment (a reload swaps them for the next call)", () => {
    let current = tokens;
    const check = authenticator({ open: new Set(), tokens: () => current });
    const get = method(ExperimentService, "GetExperiment");
    const ops = new Headers({ authorization: "Bearer ops-token-0123456789" });
    expect(check(get, ops).name).toBe("ops");
    current = new TokenSet([{ name: "ops-2", role: "reader", digest: tokenDigest("ops-token-0123456789") }]);
    expect(check(get, ops)).toEqual({ name: "ops-2", role: "reader" });
    current = new TokenSet([]);
    expect(refusal(() => check(get, ops))).toEqual([Code.Unauthenticated, expect.stringContaining("not valid")]);
  });

  it("a token set refuses a name or a token given twice", () => {
    const d = tokenDigest("same-token-0123456789");
    expect(
      () =>
        new TokenSet([
          { name: "x", role: "admin", digest: d },
          { name: "y", role: "reader", digest: d },
        ]),
    ).toThrow('tokens "x" and "y" are the same token');
    expect(
      () =>
        new TokenSet([
          { name: "x", role: "admin", digest: d },
          { name: "x", role: "reader", digest: tokenDigest("other-0123456789") },
        ]),
    ).toThrow('the token name "x" is given twice');
  });
});
