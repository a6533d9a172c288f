/**
 * The gRPC responses' encoder (src/grpc/response-encoding.ts) writes AssignUnitResponse element by
 * element and reuses the bytes of frozen Assignments: its output must be exactly protobuf-es's
 * own encoding of the same response, whatever the elements hold, the first time and every later
 * time a frozen element is encoded again; other messages go through protobuf-es unchanged.
 */
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  AssignResponseSchema,
  AssignUnitResponseSchema,
  BulkAssignResponseSchema,
} from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import { type AssignmentSchema, Layer, Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import { responseEncoder } from "../../src/grpc/response-encoding.js";

type AssignmentInit = MessageInitShape<typeof AssignmentSchema>;

/** A small deterministic generator (mulberry32), so a failure names a reproducible case. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assignment(rnd: () => number): AssignmentInit {
  const long = rnd() < 0.2;
  return {
    experimentKey: long ? "k".repeat(200 + Math.floor(rnd() * 100)) : `exp-${Math.floor(rnd() * 1000)}`,
    variantKey: rnd() < 0.1 ? "" : `v${Math.floor(rnd() * 5)}`,
    enrolled: rnd() < 0.5,
    reason: Math.floor(rnd() * 14) as Reason,
    stored: rnd() < 0.5,
    experimentVersion: BigInt(Math.floor(rnd() * 2 ** 40)),
    explanation: rnd() < 0.2 ? { layer: Layer.REDIS, variantBucket: Math.floor(rnd() * 10_000), hashVersion: 1 } : undefined,
    params: rnd() < 0.2 ? { color: "blue", size: rnd() * 100, nested: { list: [1, "two", true] } } : undefined,
  };
}

describe("responseEncoder", () => {
  it("writes AssignUnitResponse exactly as protobuf-es does, frozen elements again and again", () => {
    const encode = responseEncoder(AssignUnitResponseSchema);
    const rnd = random(42);
    const shared = Array.from({ length: 20 }, () => Object.freeze(assignment(rnd)));
    for (let round = 0; round < 300; round++) {
      const n = Math.floor(rnd() * 25);
      const assignments = Array.from({ length: n }, () => (rnd() < 0.6 ? shared[Math.floor(rnd() * shared.length)]! : assignment(rnd)));
      const expected = toBinary(AssignUnitResponseSchema, create(AssignUnitResponseSchema, { assignments }));
      const got = encode({ assignments });
      expect(Buffer.from(got).equals(Buffer.from(expected)), `round ${round}`).toBe(true);
      expect(fromBinary(AssignUnitResponseSchema, got).assignments).toHaveLength(n);
    }
  });

  it("answers an empty response as protobuf-es does (no bytes)", () => {
    const encode = responseEncoder(AssignUnitResponseSchema);
    expect(encode({ assignments: [] }).length).toBe(0);
    expect(encode({}).length).toBe(0);
  });

  it("leaves messages of other shapes to protobuf-es", () => {
    const one = { assignment: Object.freeze(assignment(random(7))) };
    expect(Buffer.from(responseEncoder(AssignResponseSchema)(one))).toEqual(
      Buffer.from(toBinary(AssignResponseSchema, create(AssignResponseSchema, one))),
    );
    const column = { column: { experimentKey: "e", legend: ["", "a"], variantIndexes: [1, 0, 1], reasons: [Reason.NEW] } };
    expect(Buffer.from(responseEncoder(BulkAssignResponseSchema)(column))).toEqual(
      Buffer.from(toBinary(BulkAssignResponseSchema, create(BulkAssignResponseSchema, column))),
    );
  });
});
