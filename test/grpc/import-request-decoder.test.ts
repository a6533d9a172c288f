/**
 * The server's own decoder of ImportAssignmentsRequest (src/grpc/import-request-decoder.ts)
 * against protobuf-es's fromBinary, the library it stands in for: on random messages, on random
 * bytes appended (unknown and repeated fields), and on random mutations (flipped, cut, inserted
 * bytes), it gives the same message or the same error.
 */
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ImportAssignmentsRequestSchema, ImportPolicy } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { decodeImportRequest, decodeImportRequestShape } from "../../src/grpc/import-request-decoder.js";

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABETS = ["abcdefghijklmnopqrstuvwxyz0123456789-_.", "\t\n\r\\ \u0000\u007f", "é€😀中\u00ff\u0080"];

function text(rand: () => number, max: number): string {
  const length = Math.floor(rand() * (max + 1));
  const alphabet = rand() < 0.85 ? ALPHABETS[0]! : ALPHABETS[Math.floor(rand() * ALPHABETS.length)]!;
  const chars = [...alphabet];
  let s = "";
  for (let i = 0; i < length; i++) s += chars[Math.floor(rand() * chars.length)];
  return s;
}

function message(rand: () => number) {
  const experiments = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => text(rand, 12));
  const variants = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => text(rand, 10));
  const rows = Array.from({ length: Math.floor(rand() * 40) }, () => ({
    experimentKey: rand() < 0.05 ? "" : experiments[Math.floor(rand() * experiments.length)]!,
    unitId: rand() < 0.05 ? "" : text(rand, 20),
    variantKey: rand() < 0.05 ? "" : variants[Math.floor(rand() * variants.length)]!,
  }));
  const setup = rand() < 0.5 ? { policy: Math.floor(rand() * 4) as ImportPolicy, skipInvalid: rand() < 0.5 } : undefined;
  return create(ImportAssignmentsRequestSchema, { setup, rows });
}

/** Both decoders on `bytes`: the same message, or both throw. */
function agree(bytes: Uint8Array): "message" | "error" {
  let expected: ReturnType<typeof fromBinary<typeof ImportAssignmentsRequestSchema>> | undefined;
  let expectedError: unknown;
  try {
    expected = fromBinary(ImportAssignmentsRequestSchema, bytes);
  } catch (err) {
    expectedError = err;
  }
  if (expected) {
    const got = decodeImportRequest(bytes);
    expect(equals(ImportAssignmentsRequestSchema, got, expected)).toBe(true);
    expect(got.rows.map((r) => [r.experimentKey, r.unitId, r.variantKey])).toEqual(
      expected.rows.map((r) => [r.experimentKey, r.unitId, r.variantKey]),
    );
    expect(got.setup === undefined).toBe(expected.setup === undefined);
    return "message";
  }
  expect(() => decodeImportRequest(bytes)).toThrow((expectedError as Error).message);
  expect(decodeImportRequestShape(bytes)).toBeUndefined();
  return "error";
}

describe("decodeImportRequest", () => {
  it("reads what clients send by its own path, and gives the same message as fromBinary", () => {
    const rand = random(1);
    let own = 0;
    for (let i = 0; i < 3_000; i++) {
      const m = message(rand);
      const bytes = toBinary(ImportAssignmentsRequestSchema, m);
      const shape = decodeImportRequestShape(bytes);
      const ascii = m.rows.every((r) => [...(r.experimentKey + r.unitId + r.variantKey)].every((c) => c.charCodeAt(0) < 0x80));
      // Its own path takes every all-ASCII message as protobuf-es writes it (else the test proves nothing).
      if (ascii) expect(shape).toBeDefined();
      if (shape) {
        own++;
        expect(equals(ImportAssignmentsRequestSchema, shape, m)).toBe(true);
      }
      expect(agree(bytes)).toBe("message");
    }
    expect(own).toBeGreaterThan(1_000);
  });

  it("with random bytes appended (unknown fields, repeated fields, garbage) agrees with fromBinary", () => {
    const rand = random(2);
    const outcomes = { message: 0, error: 0 };
    for (let i = 0; i < 3_000; i++) {
      const bytes = toBinary(ImportAssignmentsRequestSchema, message(rand));
      const extra = Uint8Array.from({ length: 1 + Math.floor(rand() * 12) }, () => Math.floor(rand() * 256));
      // Sometimes a well-formed field: a repeated setup, a row with a repeated or unknown field.
      const field = [
        [0x0a, 0x02, 0x08, 0x02],
        [0x12, 0x06, 0x0a, 0x01, 0x61, 0x0a, 0x01, 0x62],
        [0x12, 0x03, 0x20, 0x01, 0x00].slice(0, 4),
        [0x18, 0x05],
      ][Math.floor(rand() * 4)]!;
      const tail = rand() < 0.5 ? extra : Uint8Array.from(field);
      const joined = new Uint8Array(bytes.length + tail.length);
      joined.set(bytes);
      joined.set(tail, bytes.length);
      outcomes[agree(joined)]++;
    }
    expect(outcomes.message).toBeGreaterThan(100);
    expect(outcomes.error).toBeGreaterThan(100);
  });

  it("with random bytes flipped, cut out or inserted agrees with fromBinary", () => {
    const rand = random(3);
    const outcomes = { message: 0, error: 0 };
    for (let i = 0; i < 5_000; i++) {
      const bytes = Array.from(toBinary(ImportAssignmentsRequestSchema, message(rand)));
      for (let k = 0, n = 1 + Math.floor(rand() * 3); k < n && bytes.length > 0; k++) {
        const at = Math.floor(rand() * bytes.length);
        const what = rand();
        if (what < 0.4) bytes[at] = Math.floor(rand() * 256);
        else if (what < 0.7) bytes.splice(at, 1 + Math.floor(rand() * 4));
        else bytes.splice(at, 0, Math.floor(rand() * 256));
      }
      outcomes[agree(Uint8Array.from(bytes))]++;
    }
    expect(outcomes.message).toBeGreaterThan(100);
    expect(outcomes.error).toBeGreaterThan(100);
  });

  it("takes a message of 10,000 rows of one experiment whole, each key read once", () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => ({
      experimentKey: "exp-1",
      unitId: `u-${i}`,
      variantKey: i % 2 ? "treatment" : "control",
    }));
    const bytes = toBinary(
      ImportAssignmentsRequestSchema,
      create(ImportAssignmentsRequestSchema, { setup: { policy: ImportPolicy.OVERWRITE }, rows }),
    );
    const got = decodeImportRequestShape(bytes);
    expect(got?.setup?.policy).toBe(ImportPolicy.OVERWRITE);
    expect(got?.rows.length).toBe(10_000);
    expect(got?.rows[9_999]).toEqual({
      $typeName: "assignment.v1.ImportRow",
      experimentKey: "exp-1",
      unitId: "u-9999",
      variantKey: "treatment",
    });
  });
});
