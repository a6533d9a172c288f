import { invalidArgument } from "../errors.js";
import { utf8ByteLength } from "./utf8.js";

/** The names and limits of SPEC.md "Names and limits". Each `check…` throws INVALID_ARGUMENT
 * naming the field and the rule; each `isValid…` answers without throwing (for per-item reasons). */

export const UNIT_TYPE_RULE = "must match [a-z][a-z0-9_]{0,63}";
export const KEY_RULE = "must match [a-z0-9][a-z0-9._-]{0,127}";
export const VARIANT_KEY_RULE = "must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}";
export const UNIT_ID_RULE = "must be 1 to 512 bytes of UTF-8 without U+0000";
// U+0000 is refused too: PostgreSQL text cannot hold it (the SPEC says "any 1 to 256 bytes of UTF-8").
export const SALT_RULE = "must be 1 to 256 bytes of UTF-8 without U+0000";

const UNIT_TYPE = /^[a-z][a-z0-9_]{0,63}$/;
const KEY = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const VARIANT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const DEFAULT_UNIT_TYPE = "user_id";
export const MAX_UNIT_ID_BYTES = 512;
export const MAX_SALT_BYTES = 256;
export const MAX_VARIANTS = 100;
export const TOTAL_WEIGHT = 10_000;
export const FULL_ROLLOUT = 10_000;
export const DEFAULT_SEGMENTS = 10_000;
export const MAX_SEGMENTS = 100_000;
/** Params nest at most this deep: the params object is level 1, each object or list inside one
 * more (every protobuf runtime can read a Struct that deep back; Python's stops near 50). */
export const MAX_PARAMS_DEPTH = 32;

export function isValidUnitId(unitId: string): boolean {
  // Fast path: a string of at most 170 UTF-16 units is at most 510 UTF-8 bytes.
  if (unitId.length === 0 || unitId.includes("\u0000")) return false;
  return unitId.length <= 170 || utf8ByteLength(unitId) <= MAX_UNIT_ID_BYTES;
}

export function isValidUnitType(unitType: string): boolean {
  return UNIT_TYPE.test(unitType);
}

export function isValidKey(key: string): boolean {
  return KEY.test(key);
}

export function isValidVariantKey(key: string): boolean {
  return VARIANT_KEY.test(key);
}

export function checkUnitType(field: string, unitType: string): string {
  const t = unitType === "" ? DEFAULT_UNIT_TYPE : unitType;
  if (!isValidUnitType(t)) throw invalidArgument(field, UNIT_TYPE_RULE);
  return t;
}

export function checkKey(field: string, key: string): string {
  if (!KEY.test(key)) throw invalidArgument(field, KEY_RULE);
  return key;
}

export function checkVariantKey(field: string, key: string): string {
  if (!VARIANT_KEY.test(key)) throw invalidArgument(field, VARIANT_KEY_RULE);
  return key;
}

export function checkUnitId(field: string, unitId: string): string {
  if (!isValidUnitId(unitId)) throw invalidArgument(field, UNIT_ID_RULE);
  return unitId;
}

export function checkSalt(field: string, salt: string): string {
  const bytes = utf8ByteLength(salt);
  if (bytes < 1 || bytes > MAX_SALT_BYTES || salt.includes("\u0000")) throw invalidArgument(field, SALT_RULE);
  return salt;
}

/** The key, salt (the key when absent) and unit type (DEFAULT_UNIT_TYPE when empty) of a new
 * experiment or namespace. */
export function checkNewIdentity(req: { key: string; salt?: string; unitType: string }): { key: string; salt: string; unitType: string } {
  const key = checkKey("key", req.key);
  return { key, salt: checkSalt("salt", req.salt ?? key), unitType: checkUnitType("unit_type", req.unitType) };
}

export function checkBasisPoints(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 10_000) {
    throw invalidArgument(field, "must be an integer number of basis points 0..10000");
  }
  return value;
}

export interface VariantInput {
  key: string;
  weight: number;
}

/** 1 to 100 variants, unique valid keys, weights 0..10000 summing to exactly 10000. */
export function checkVariants(field: string, variants: readonly VariantInput[]): void {
  if (variants.length < 1 || variants.length > MAX_VARIANTS) {
    throw invalidArgument(field, `must hold 1 to ${MAX_VARIANTS} variants (got ${variants.length})`);
  }
  const seen = new Set<string>();
  let total = 0;
  variants.forEach((v, i) => {
    checkVariantKey(`${field}[${i}].key`, v.key);
    if (seen.has(v.key)) throw invalidArgument(`${field}[${i}].key`, `must be unique inside the experiment ("${v.key}" repeats)`);
    seen.add(v.key);
    checkBasisPoints(`${field}[${i}].weight`, v.weight);
    total += v.weight;
  });
  if (total !== TOTAL_WEIGHT) throw invalidArgument(`${field}[].weight`, `must sum to exactly 10000 (got ${total})`);
}

export function checkSegments(field: string, segments: number): number {
  if (!Number.isInteger(segments) || segments < 1 || segments > MAX_SEGMENTS) {
    throw invalidArgument(field, `must be 1..${MAX_SEGMENTS}`);
  }
  return segments;
}
