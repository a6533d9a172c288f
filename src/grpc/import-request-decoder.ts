import { fromBinary } from "@bufbuild/protobuf";
import {
  type ImportAssignmentsRequest,
  ImportAssignmentsRequestSchema,
  type ImportRow,
  type ImportSetup,
  ImportSetupSchema,
} from "../../gen/ts/assignment/v1/experiment_service_pb.js";

/**
 * ImportAssignmentsRequest from its wire bytes, the same message protobuf-es's `fromBinary` makes
 * (test/grpc/import-request-decoder.test.ts compares them on random and mutated messages), in a
 * fraction of the time and garbage: an import's server spent about a third of its CPU in
 * `fromBinary` (reflective field dispatch, a TextDecoder call per string) and in collecting what
 * it left. This reads the shape clients send: setup (field 1) at most once, then rows (field 2),
 * each with its three strings (fields 1-3) at most once; an experiment or variant key equal to
 * the previous row's is the same string again. Anything else (unknown or repeated fields, other
 * wire types, malformed bytes, a byte above 0x7F in a key or unit id) is left to `fromBinary`,
 * whose answer (or error) is then the one given.
 */
export function decodeImportRequest(bytes: Uint8Array): ImportAssignmentsRequest {
  return decodeImportRequestShape(bytes) ?? fromBinary(ImportAssignmentsRequestSchema, bytes);
}

/** latin1Slice: Buffer's own copy of bytes as one byte per character (not in Node's types). */
const latin1 = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

/** An ASCII string of bytes[start, end), or undefined when a byte is not ASCII. */
function ascii(bytes: Uint8Array, start: number, end: number): string | undefined {
  for (let i = start; i < end; i++) if (bytes[i]! > 0x7f) return undefined;
  return latin1.call(bytes, start, end);
}

/** Whether bytes[start, end) are the bytes of the ASCII string `s`. */
function same(bytes: Uint8Array, start: number, end: number, s: string | undefined): boolean {
  if (s === undefined || s.length !== end - start) return false;
  for (let i = 0; i < s.length; i++) if (bytes[start + i] !== s.charCodeAt(i)) return false;
  return true;
}

/** The message when its bytes have the shape read here (see decodeImportRequest), else undefined. */
export function decodeImportRequestShape(input: Uint8Array): ImportAssignmentsRequest | undefined {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const end = bytes.length;
  let pos = 0;
  /** A varint of at most 32 bits at pos (advancing it), or -1. */
  const varint = (): number => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= end) return -1;
      const b = bytes[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result <= 0x7fffffff ? result : -1;
    }
    return -1;
  };
  let setup: ImportSetup | undefined;
  const rows: ImportRow[] = [];
  let lastExperiment: string | undefined;
  const variants: string[] = []; // the variant keys met so far (a handful)
  while (pos < end) {
    const tag = varint();
    const length = varint();
    if (length < 0 || pos + length > end) return undefined;
    const stop = pos + length;
    if (tag === 0x0a && setup === undefined && rows.length === 0) {
      try {
        setup = fromBinary(ImportSetupSchema, bytes.subarray(pos, stop));
      } catch {
        return undefined;
      }
      pos = stop;
      continue;
    }
    if (tag !== 0x12) return undefined;
    let experimentKey: string | undefined;
    let unitId: string | undefined;
    let variantKey: string | undefined;
    while (pos < stop) {
      const field = varint();
      const n = varint();
      if (n < 0 || pos + n > stop) return undefined;
      const from = pos;
      pos += n;
      if (field === 0x0a && experimentKey === undefined) {
        experimentKey = same(bytes, from, pos, lastExperiment) ? lastExperiment : (lastExperiment = ascii(bytes, from, pos));
        if (experimentKey === undefined) return undefined;
      } else if (field === 0x12 && unitId === undefined) {
        unitId = ascii(bytes, from, pos);
        if (unitId === undefined) return undefined;
      } else if (field === 0x1a && variantKey === undefined) {
        for (let v = 0; v < variants.length && variantKey === undefined; v++)
          if (same(bytes, from, pos, variants[v])) variantKey = variants[v];
        if (variantKey === undefined) {
          variantKey = ascii(bytes, from, pos);
          if (variantKey === undefined) return undefined;
          if (variants.length < 16) variants.push(variantKey);
        }
      } else {
        return undefined;
      }
    }
    rows.push({
      $typeName: "assignment.v1.ImportRow",
      experimentKey: experimentKey ?? "",
      unitId: unitId ?? "",
      variantKey: variantKey ?? "",
    });
  }
  return { $typeName: "assignment.v1.ImportAssignmentsRequest", setup, rows };
}
