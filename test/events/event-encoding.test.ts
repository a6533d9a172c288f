/**
 * The publisher's hand-written AssignmentEvent encoder (src/sinks/event-encoding.ts) against
 * protobuf-es: byte for byte what `toBinary(AssignmentEventSchema, eventMessage(e))` writes, over
 * many random events (any string, including non-ASCII and lone surrogates; positions and versions
 * up to 2^64 − 1; enums outside their declared values, negative ones too; dates before 1970), and
 * decoded back to the same message.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssignmentEventSchema } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { encodeEvents } from "../../src/sinks/event-encoding.js";
import { eventMessage } from "../../src/sinks/jetstream-sink.js";
import type { StoredEvent } from "../../src/store/event-log.js";

const text = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: "grapheme", maxLength: 200 }));
const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const event: fc.Arbitrary<StoredEvent> = fc.record({
  position: u64,
  kind: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
  experimentId: fc.option(fc.integer({ min: 1 }), { nil: undefined }),
  experimentKey: fc.option(text, { nil: undefined }),
  unitType: text,
  unitId: text,
  variantKey: fc.option(text, { nil: undefined }),
  source: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
  version: u64,
  at: fc.oneof(
    fc.date({ min: new Date("2020-01-01T00:00:00Z"), max: new Date("2040-01-01T00:00:00Z"), noInvalidDate: true }),
    fc.date({ noInvalidDate: true }),
  ),
});

describe("AssignmentEvent encoding", () => {
  it("writes exactly protobuf-es's bytes for random events, a batch at a time", () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 50 }), (events) => {
        const encoded = encodeEvents(events);
        expect(encoded).toHaveLength(events.length);
        for (let i = 0; i < events.length; i++) {
          const expected = toBinary(AssignmentEventSchema, eventMessage(events[i]!));
          expect(Buffer.from(encoded[i]!).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
          expect(fromBinary(AssignmentEventSchema, encoded[i]!)).toEqual(eventMessage(events[i]!));
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it("a typical event: every field present, the stored shape", () => {
    const e: StoredEvent = {
      position: 123_456_789n,
      kind: 1,
      experimentId: 7,
      experimentKey: "checkout-button",
      unitType: "user_id",
      unitId: "user-42",
      variantKey: "treatment",
      source: 1,
      version: 3n,
      at: new Date("2026-12-02T01:23:45.678Z"),
    };
    expect(Buffer.from(encodeEvents([e])[0]!)).toEqual(Buffer.from(toBinary(AssignmentEventSchema, eventMessage(e))));
  });
});
