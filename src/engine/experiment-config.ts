import type { JsonObject } from "@bufbuild/protobuf";
import type { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import type { Condition } from "./condition.js";
import { type HashVersion, requireHashVersion } from "./hash.js";

/** One variant as the engine sees it. `id` is stable for the life of the experiment and is what
 * stored assignments and caches record; it is the variant's position when it was added, never reused. */
export interface VariantConfig {
  readonly id: number;
  readonly key: string;
  readonly weight: number;
  readonly params: JsonObject | undefined;
}

/** A namespace as the engine sees it: `owners[segment]` is the id of the experiment holding that
 * segment, 0 when free. */
export interface NamespaceConfig {
  readonly id: number;
  readonly key: string;
  readonly salt: string;
  readonly unitType: string;
  /** The hash version of its segments. */
  readonly hashVersion: HashVersion;
  readonly segments: number;
  readonly owners: Int32Array;
  /** What a unit in none of its experiments gets (SPEC.md "Namespaces"); undefined when none. */
  readonly defaultParams?: JsonObject | undefined;
}

/** A holdout covering an experiment (SPEC.md "Holdouts"): units whose holdout bucket is below
 * `share` (basis points) are not enrolled anew. */
export interface HoldoutConfig {
  readonly id: number;
  readonly key: string;
  readonly salt: string;
  readonly hashVersion: HashVersion;
  readonly share: number;
}

/** Whether a holdout of `unitType` and `tags` covers an experiment: same unit type, and any of
 * its tags on the experiment (every experiment of the unit type when it names none). */
export function holdoutCovers(
  holdout: { readonly unitType: string; readonly tags: readonly string[] },
  experiment: { readonly unitType: string; readonly tags: readonly string[] },
): boolean {
  if (holdout.unitType !== experiment.unitType) return false;
  return holdout.tags.length === 0 || holdout.tags.some((t) => experiment.tags.includes(t));
}

/** The in-memory configuration of one experiment: everything an evaluation needs, no I/O. */
export interface ExperimentConfig {
  readonly id: number;
  readonly key: string;
  readonly salt: string;
  readonly unitType: string;
  /** The hash version of its buckets. */
  readonly hashVersion: HashVersion;
  /** In evaluation order. */
  readonly variants: readonly VariantConfig[];
  readonly weights: readonly number[];
  readonly variantsById: ReadonlyMap<number, VariantConfig>;
  readonly rollout: number;
  readonly status: ExperimentStatus;
  readonly defaultVariant: VariantConfig;
  readonly winner: VariantConfig | undefined;
  readonly tags: readonly string[];
  readonly namespace: NamespaceConfig | undefined;
  /** The holdouts covering it (rule 7), in no particular order. */
  readonly holdouts: readonly HoldoutConfig[];
  /** Its targeting condition (rule 8), compiled once for this configuration; none when it targets
   * every unit. */
  readonly condition: Condition | undefined;
  /** How many overrides exist; when 0, DRAFT and STOPPED answers need no store lookup. */
  readonly overrideCount: number;
  /** Changes when stored assignments changed under the caches; cache keys carry it. */
  readonly cacheGeneration: number;
  readonly version: bigint;
}

export interface NamespaceConfigInput {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  segments: number;
  defaultParams?: JsonObject | undefined;
  /** (segment, experiment id) of every allocated segment. */
  allocations: Iterable<readonly [number, number]>;
}

/** Throws UnknownHashVersionError for a hash version this server cannot compute. */
export function buildNamespaceConfig(input: NamespaceConfigInput): NamespaceConfig {
  const hashVersion = requireHashVersion(`namespace "${input.key}"`, input.hashVersion);
  const owners = new Int32Array(input.segments);
  for (const [segment, experimentId] of input.allocations) owners[segment] = experimentId;
  return {
    id: input.id,
    key: input.key,
    salt: input.salt,
    unitType: input.unitType,
    hashVersion,
    segments: input.segments,
    owners,
    defaultParams: input.defaultParams,
  };
}

export interface ExperimentConfigInput {
  id: number;
  key: string;
  salt: string;
  unitType: string;
  hashVersion: number;
  variants: VariantConfig[];
  rollout: number;
  status: ExperimentStatus;
  defaultVariantKey: string | undefined;
  winnerKey: string | undefined;
  tags: string[];
  namespace: NamespaceConfig | undefined;
  /** The holdouts covering it; none when absent. */
  holdouts?: readonly HoldoutConfig[];
  /** The compiled targeting condition; none when absent. */
  condition?: Condition;
  overrideCount: number;
  cacheGeneration: number;
  version: bigint;
}

/** Builds the derived lookups once, so that evaluation does no searching. Throws
 * UnknownHashVersionError for a hash version this server cannot compute. */
export function buildExperimentConfig(input: ExperimentConfigInput): ExperimentConfig {
  const byKey = new Map(input.variants.map((v) => [v.key, v]));
  const defaultVariant = (input.defaultVariantKey && byKey.get(input.defaultVariantKey)) || input.variants[0]!;
  return {
    id: input.id,
    key: input.key,
    salt: input.salt,
    unitType: input.unitType,
    hashVersion: requireHashVersion(`experiment "${input.key}"`, input.hashVersion),
    variants: input.variants,
    weights: input.variants.map((v) => v.weight),
    variantsById: new Map(input.variants.map((v) => [v.id, v])),
    rollout: input.rollout,
    status: input.status,
    defaultVariant,
    winner: input.winnerKey ? byKey.get(input.winnerKey) : undefined,
    tags: input.tags,
    namespace: input.namespace,
    holdouts: input.holdouts ?? [],
    condition: input.condition,
    overrideCount: input.overrideCount,
    cacheGeneration: input.cacheGeneration,
    version: input.version,
  };
}
