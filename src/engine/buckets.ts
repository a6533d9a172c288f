import { type HashVersion, hash } from "./hash.js";

/** Buckets of SPEC.md "Hashing", each of the hash version of the experiment or namespace. */

export const BUCKETS = 10_000;

/** `H(unit_id + ":" + salt) mod 10000`. */
export function variantBucket(unitId: string, salt: string, version: HashVersion): number {
  return hash(unitId + ":" + salt, version) % BUCKETS;
}

/** `H(unit_id + ":" + salt + ":rollout") mod 10000`. */
export function rolloutBucket(unitId: string, salt: string, version: HashVersion): number {
  return hash(unitId + ":" + salt + ":rollout", version) % BUCKETS;
}

/** `H(unit_id + ":" + holdout_salt) mod 10000`; held out when below the holdout's share. */
export function holdoutBucket(unitId: string, holdoutSalt: string, version: HashVersion): number {
  return hash(unitId + ":" + holdoutSalt, version) % BUCKETS;
}

/** `H(unit_id + ":" + namespace_salt) mod segments`. */
export function segmentOf(unitId: string, namespaceSalt: string, segments: number, version: HashVersion): number {
  return hash(unitId + ":" + namespaceSalt, version) % segments;
}

/**
 * The first index `i`, in order, with `bucket < weights[0] + … + weights[i]`.
 * Weights sum to 10000 and buckets are below 10000, so there is always one.
 */
export function pickVariantIndex(bucket: number, weights: readonly number[]): number {
  let cumulative = 0;
  for (let i = 0; i < weights.length; i++) {
    cumulative += weights[i]!;
    if (bucket < cumulative) return i;
  }
  throw new RangeError(`bucket ${bucket} is beyond the weights' total ${cumulative}`);
}
