/**
 * The one mapping of domain errors to gRPC statuses (src/grpc/status-mapping.ts), and the domain's
 * Code being the canonical gRPC code numbers, which grpc-js's `status` enum is independent
 * evidence of.
 */
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Code, ServiceError } from "../../src/errors.js";
import { MAX_DETAILS_CHARS, toGrpcStatus } from "../../src/grpc/status-mapping.js";

/** `InvalidArgument` -> `INVALID_ARGUMENT`; Connect's American `Canceled` is gRPC's `CANCELLED`. */
const grpcName = (name: string) => (name === "Canceled" ? "CANCELLED" : name.replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase());

describe("Code", () => {
  it("names every gRPC error code with its number", () => {
    const grpcErrors = Object.entries(status).filter(([name, n]) => typeof n === "number" && name !== "OK");
    expect(Object.keys(Code)).toHaveLength(grpcErrors.length);
    for (const [name, n] of Object.entries(Code)) {
      expect([name, n]).toEqual([name, status[grpcName(name) as keyof typeof status]]);
    }
  });
});

describe("toGrpcStatus", () => {
  const quiet = () => {};

  it.each(Object.entries(Code))("a ServiceError of %s keeps its code and message", (name, code) => {
    const s = toGrpcStatus(new ServiceError(code, `because ${name}`), quiet);
    expect([s.code, s.details]).toEqual([status[grpcName(name) as keyof typeof status], `because ${name}`]);
  });

  it("anything else is INTERNAL, its detail logged and not sent", () => {
    const logged: unknown[] = [];
    const err = Object.assign(new Error("secret table name"), { code: "42P01" });
    const s = toGrpcStatus(err, (_msg, e) => logged.push(e));
    expect([s.code, s.details]).toEqual([status.INTERNAL, "internal error"]);
    expect(logged).toEqual([err]);
  });

  it("cuts details to a bounded length", () => {
    const s = toGrpcStatus(new ServiceError(Code.InvalidArgument, "x".repeat(MAX_DETAILS_CHARS + 10)), quiet);
    expect(s.details?.startsWith("x".repeat(MAX_DETAILS_CHARS))).toBe(true);
    expect(s.details).toContain("(10 more characters)");
  });

  it("sends well-formed details: a lone surrogate, quoted or left by the cut, becomes U+FFFD", () => {
    // grpc-js encodes details with encodeURIComponent, which throws URIError on a lone surrogate.
    const quoted = toGrpcStatus(new ServiceError(Code.InvalidArgument, 'key: "a\uD800b\uDC00" must match'), quiet);
    expect(quoted.details).toBe('key: "a\uFFFDb\uFFFD" must match');
    expect(() => encodeURIComponent(quoted.details!)).not.toThrow();
    const pairs = "x".repeat(MAX_DETAILS_CHARS - 1) + "😀".repeat(5); // the cut falls inside a pair
    const cut = toGrpcStatus(new ServiceError(Code.InvalidArgument, pairs), quiet);
    expect(() => encodeURIComponent(cut.details!)).not.toThrow();
    expect(cut.details?.startsWith(`${"x".repeat(MAX_DETAILS_CHARS - 1)}\uFFFD…`)).toBe(true);
    // Whole pairs are kept as they are.
    expect(toGrpcStatus(new ServiceError(Code.NotFound, "unit 😀 not found"), quiet).details).toBe("unit 😀 not found");
  });
});
