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

/**
 * The hash versions this server can evaluate. Every experiment and namespace records the version
 * it was made with, and is evaluated with that one for ever: a new version is added here (and to
 * `hash`), never changed.
 */
export const HASH_VERSIONS = [1] as const;
export type HashVersion = (typeof HASH_VERSIONS)[number];
/** The version new experiments and namespaces are made with. */
export const CURRENT_HASH_VERSION: HashVersion = 1;

/** Thrown for a hash version this server cannot compute (one made by a newer server). */
export class UnknownHashVersionError extends RangeError {
  constructor(
    readonly what: string,
    readonly version: number,
  ) {
    super(`${what} uses hash version ${version}, which this server cannot evaluate (it knows ${HASH_VERSIONS.join(", ")})`);
    this.name = "UnknownHashVersionError";
  }
}

/** The one place a recorded version is accepted or refused: `version` as a HashVersion, or
 * UnknownHashVersionError naming `what` ("experiment "x""). */
export function requireHashVersion(what: string, version: number): HashVersion {
  if (!(HASH_VERSIONS as readonly number[]).includes(version)) throw new UnknownHashVersionError(what, version);
  return version as HashVersion;
}

/** `H(s)` of hash version `version` (SPEC.md "Hashing"): the one place versions are dispatched. */
export function hash(s: string, version: HashVersion): number {
  switch (version) {
    case 1:
      return hashV1(s);
    default:
      throw new UnknownHashVersionError("a hash", version);
  }
}
