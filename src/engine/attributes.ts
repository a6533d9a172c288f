/**
 * A unit's attributes for targeting (SPEC.md "Names and limits"): at most 64, keys
 * `[A-Za-z_][A-Za-z0-9_]{0,63}`, values string / number / bool / list of those, each at most 1 KiB.
 */
import { invalidArgument } from "../errors.js";
import { utf8ByteLength } from "./utf8.js";

export type AttributeScalar = string | number | boolean;
export type AttributeValue = AttributeScalar | readonly AttributeScalar[];
/** What a condition reads as `attributes`. */
export type Attributes = ReadonlyMap<string, AttributeValue>;

/** A call without attributes. */
export const NO_ATTRIBUTES: Attributes = new Map();

export const MAX_ATTRIBUTES = 64;
export const MAX_ATTRIBUTE_VALUE_BYTES = 1024;
const KEY = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Bytes a value takes for the 1 KiB rule: a string's UTF-8, 8 for a number, 1 for a bool, a
 * list the sum of its elements. */
function valueBytes(v: AttributeValue): number {
  if (typeof v === "string") return utf8ByteLength(v);
  if (typeof v === "number") return 8;
  if (typeof v === "boolean") return 1;
  let n = 0;
  for (const x of v) n += valueBytes(x);
  return n;
}

function isScalar(v: unknown): v is AttributeScalar {
  return typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
}

/**
 * Checks attributes given as a JSON-like object (a protobuf Struct's JSON) and returns them as the
 * map conditions read; throws INVALID_ARGUMENT naming `field` (and the key) and the rule.
 */
export function checkAttributes(field: string, input: Readonly<Record<string, unknown>>): Attributes {
  const entries = Object.entries(input);
  if (entries.length > MAX_ATTRIBUTES)
    throw invalidArgument(field, `must hold at most ${MAX_ATTRIBUTES} attributes (got ${entries.length})`);
  const out = new Map<string, AttributeValue>();
  for (const [key, value] of entries) {
    if (!KEY.test(key)) throw invalidArgument(`${field}.${JSON.stringify(key)}`, "keys must match [A-Za-z_][A-Za-z0-9_]{0,63}");
    const f = `${field}.${key}`;
    if (Array.isArray(value)) {
      if (!value.every(isScalar)) throw invalidArgument(f, "a list may hold only strings, finite numbers and booleans");
    } else if (!isScalar(value)) {
      throw invalidArgument(f, "must be a string, a finite number, a boolean or a list of those (no objects or null)");
    }
    const v = value as AttributeValue;
    if (valueBytes(v) > MAX_ATTRIBUTE_VALUE_BYTES) throw invalidArgument(f, `must be at most ${MAX_ATTRIBUTE_VALUE_BYTES} bytes`);
    out.set(key, v);
  }
  return out;
}

/** The call's attributes with a unit's own laid over them key by key (per-unit values win). */
export function mergeAttributes(call: Attributes, unit: Attributes | undefined): Attributes {
  if (!unit || unit.size === 0) return call;
  if (call.size === 0) return unit;
  return new Map([...call, ...unit]);
}

/** A call's attributes (a Struct's JSON; absent: none), checked as checkAttributes does. */
export function checkCallAttributes(field: string, input: Readonly<Record<string, unknown>> | undefined): Attributes {
  if (input === undefined) return NO_ATTRIBUTES;
  const a = checkAttributes(field, input);
  return a.size === 0 ? NO_ATTRIBUTES : a;
}

/**
 * Per-unit attributes, positional to `count` unit ids, each laid over the call's: none (every unit
 * has the call's, returned as is), or exactly one per id (INVALID_ARGUMENT naming `field`
 * otherwise; each checked as checkAttributes does, naming `field[i]`).
 */
export function checkUnitAttributes(
  field: string,
  list: readonly Readonly<Record<string, unknown>>[],
  count: number,
  call: Attributes,
): Attributes | Attributes[] {
  if (list.length === 0) return call;
  if (list.length !== count) {
    throw invalidArgument(field, `must hold one entry per unit id (${count}) or none (got ${list.length})`);
  }
  const out = new Array<Attributes>(count);
  for (let i = 0; i < count; i++) out[i] = mergeAttributes(call, checkAttributes(`${field}[${i}]`, list[i]!));
  return out;
}
