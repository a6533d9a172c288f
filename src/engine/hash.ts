import murmurHash3 from "murmurhash3js-revisited";

// Callers below always hand the library a Uint8Array, so its per-byte input check is pure cost.
murmurHash3.inputValidation = false;

const encoder = new TextEncoder();
let scratch = new Uint8Array(2048);

/**
 * Hash version 1 of SPEC.md: MurmurHash3 x86 32-bit of the UTF-8 bytes of `s`, seed 0, unsigned.
 * Equal to Python's `mmh3.hash(s, signed=False)`.
 */
export function hashV1(s: string): number {
  // A UTF-16 code unit never takes more than 3 UTF-8 bytes.
  if (s.length * 3 > scratch.length) scratch = new Uint8Array(s.length * 3 * 2);
  const { written } = encoder.encodeInto(s, scratch);
  return murmurHash3.x86.hash32(scratch.subarray(0, written), 0) >>> 0;
}

/** The hash versions this server can evaluate. A new version is added, never changed. */
export const HASH_VERSIONS = [1] as const;
export const CURRENT_HASH_VERSION = 1;
