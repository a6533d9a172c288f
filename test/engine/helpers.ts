/**
 * Helpers for the engine tests. Everything here is written independently of src/engine so that
 * the tests compare the engine against a second derivation of SPEC.md, never against itself.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import {
  buildExperimentConfig,
  type ExperimentConfig,
  type HoldoutConfig,
  type NamespaceConfig,
  type VariantConfig,
} from "../../src/engine/index.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const vectorsPath = path.resolve(repoRoot, "spec/vectors/assignment-v1.json");

export interface HashCase {
  input: string;
  hash: number;
}
export interface BucketCase {
  unit_id: string;
  salt: string;
  variant_bucket: number;
  rollout_bucket: number;
}
export interface SegmentCase {
  unit_id: string;
  namespace_salt: string;
  segments: number;
  segment: number;
}
export interface EvaluateCase {
  unit_id: string;
  salt: string;
  weights: number[];
  rollout: number;
  /** Variant index, or null when not enrolled because of the rollout. */
  variant: number | null;
}
export interface Vectors {
  spec_version: number;
  about: string;
  hash: HashCase[];
  buckets: BucketCase[];
  segments: SegmentCase[];
  evaluate: EvaluateCase[];
}

export function loadVectors(): Vectors {
  return JSON.parse(readFileSync(vectorsPath, "utf8")) as Vectors;
}

/**
 * Reference MurmurHash3 x86 32-bit (Austin Appleby's public-domain algorithm), written from the
 * algorithm description, not from the library the engine uses. Returns an unsigned integer.
 */
export function referenceMurmur3(bytes: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const n = bytes.length;
  const blocks = n >>> 2;
  let h = seed | 0;
  for (let i = 0; i < blocks; i++) {
    const j = i * 4;
    let k = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  const rest = n & 3;
  if (rest > 0) {
    let k = 0;
    if (rest >= 3) k ^= bytes[tail + 2] << 16;
    if (rest >= 2) k ^= bytes[tail + 1] << 8;
    k ^= bytes[tail];
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function referenceH(s: string): number {
  return referenceMurmur3(Buffer.from(s, "utf8"));
}

/** SPEC "variant": the first i with bucket < weight_0 + … + weight_i (the classic cumulative walk). */
export function classicWalk(bucket: number, weights: readonly number[]): number {
  const cumulative: number[] = [];
  let sum = 0;
  for (const w of weights) cumulative.push((sum += w));
  const i = cumulative.findIndex((c) => bucket < c);
  if (i < 0) throw new Error(`bucket ${bucket} beyond ${sum}`);
  return i;
}

/** Deterministic PRNG (mulberry32) for pseudo-random but reproducible test data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Variant ids deliberately differ from positions (id = 100 + 7 * index), so id/index mix-ups show. */
export function variantId(index: number): number {
  return 100 + 7 * index;
}

export function makeVariants(weights: readonly number[], keys?: readonly string[]): VariantConfig[] {
  return weights.map((weight, i) => ({
    id: variantId(i),
    key: keys?.[i] ?? `v${i}`,
    weight,
    params: undefined,
  }));
}

export interface ExperimentOptions {
  id?: number;
  key?: string;
  salt?: string;
  unitType?: string;
  weights?: readonly number[];
  keys?: readonly string[];
  rollout?: number;
  status?: ExperimentStatus;
  defaultVariantKey?: string;
  winnerKey?: string;
  namespace?: NamespaceConfig;
  holdouts?: readonly HoldoutConfig[];
  overrideCount?: number;
}

export function makeExperiment(o: ExperimentOptions = {}): ExperimentConfig {
  const key = o.key ?? "exp";
  // Built as a variable (not an inline literal) so that fields the engine adds for other layers,
  // such as cacheGeneration, can be supplied without breaking the type check when absent.
  const input = {
    id: o.id ?? 1,
    key,
    salt: o.salt ?? key,
    unitType: o.unitType ?? "user_id",
    hashVersion: 1,
    variants: makeVariants(o.weights ?? [5000, 5000], o.keys),
    rollout: o.rollout ?? 10_000,
    status: o.status ?? ExperimentStatus.RUNNING,
    defaultVariantKey: o.defaultVariantKey,
    winnerKey: o.winnerKey,
    tags: [],
    namespace: o.namespace,
    holdouts: o.holdouts,
    overrideCount: o.overrideCount ?? 0,
    cacheGeneration: 0,
    version: 1n,
  };
  return buildExperimentConfig(input);
}
