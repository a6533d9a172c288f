import { ExperimentStatus, Reason, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { type Attributes, NO_ATTRIBUTES } from "./attributes.js";
import { holdoutBucket, pickVariantIndex, rolloutBucket, segmentOf, variantBucket } from "./buckets.js";
import type { ExperimentConfig, HoldoutConfig, VariantConfig } from "./experiment-config.js";
import { FULL_ROLLOUT, isValidUnitId } from "./rules.js";

/** A stored assignment as read from the store or a cache. */
export interface StoredAssignment {
  readonly variantId: number;
  readonly source: Source;
}

// Stored values are shared: there are only as many as variants times sources, and a batch of
// 10,000 units should not allocate 10,000 of them.
const storedValues = new Map<number, StoredAssignment>();

/** The (shared, frozen) stored value of a variant id and source. */
export function storedValue(variantId: number, source: Source): StoredAssignment {
  const k = variantId * 8 + source;
  let v = storedValues.get(k);
  if (!v) storedValues.set(k, (v = Object.freeze({ variantId, source })));
  return v;
}

/** The outcome of SPEC.md "Evaluating one unit for one experiment". */
export interface Evaluation {
  readonly reason: Reason;
  /** Undefined for UNKNOWN_EXPERIMENT, INVALID_UNIT and UNIT_TYPE_MISMATCH. */
  readonly variant: VariantConfig | undefined;
}

const ENROLLED = new Set([Reason.OVERRIDE, Reason.STICKY, Reason.NEW]);

/** OVERRIDE, STICKY and NEW are enrolled. */
export function isEnrolled(reason: Reason): boolean {
  return ENROLLED.has(reason);
}

/**
 * Rules 1 and 2: the answer when the experiment is unknown or the unit cannot be evaluated,
 * else undefined.
 */
export function refuseUnit(experiment: ExperimentConfig | undefined, unitId: string, unitType: string): Evaluation | undefined {
  if (!experiment) return { reason: Reason.UNKNOWN_EXPERIMENT, variant: undefined };
  if (!isValidUnitId(unitId)) return { reason: Reason.INVALID_UNIT, variant: undefined };
  if (unitType !== experiment.unitType) return { reason: Reason.UNIT_TYPE_MISMATCH, variant: undefined };
  return undefined;
}

/**
 * Whether a stored assignment could change the answer (rules 3 and 5), so the store must be
 * consulted. DRAFT and STOPPED experiments without overrides are answered from configuration alone.
 */
export function needsStoreLookup(experiment: ExperimentConfig): boolean {
  const s = experiment.status;
  return s === ExperimentStatus.RUNNING || s === ExperimentStatus.PAUSED || experiment.overrideCount > 0;
}

/**
 * Rules 3 to 11 for a unit that passed rules 1 and 2. `stored` is the unit's override (source
 * OVERRIDE) when it has one, else its stored assignment, or undefined when it has neither (or the
 * store was not consulted because needsStoreLookup said so). `targeting` is what rule 8 goes by: the
 * unit's attributes (none when absent), which the experiment's condition is tested against only
 * when rule 8 is reached; or the outcome itself (false: the condition is not true), as the golden
 * vectors state it.
 */
export function decide(
  experiment: ExperimentConfig,
  unitId: string,
  stored: StoredAssignment | undefined,
  targeting: Attributes | boolean = NO_ATTRIBUTES,
): Evaluation {
  const storedVariant = stored && experiment.variantsById.get(stored.variantId);
  // 3. Overrides apply in every status.
  if (storedVariant && stored.source === Source.OVERRIDE) return { reason: Reason.OVERRIDE, variant: storedVariant };
  // 4. Not running.
  if (experiment.status === ExperimentStatus.DRAFT) {
    return { reason: Reason.NOT_RUNNING, variant: experiment.defaultVariant };
  }
  if (experiment.status === ExperimentStatus.STOPPED) {
    return experiment.winner
      ? { reason: Reason.WINNER, variant: experiment.winner }
      : { reason: Reason.NOT_RUNNING, variant: experiment.defaultVariant };
  }
  // 5. Sticky.
  if (storedVariant) return { reason: Reason.STICKY, variant: storedVariant };
  // 6. Paused: nobody new.
  if (experiment.status === ExperimentStatus.PAUSED) return { reason: Reason.PAUSED, variant: experiment.defaultVariant };
  // 7. Held out by a holdout covering the experiment.
  if (experiment.holdouts.length > 0 && holdingOut(experiment, unitId))
    return { reason: Reason.HOLDOUT, variant: experiment.defaultVariant };
  // 8. Targeting: a condition that is not true.
  const targeted = typeof targeting === "boolean" ? targeting : experiment.condition === undefined || experiment.condition.test(targeting);
  if (!targeted) return { reason: Reason.NOT_TARGETED, variant: experiment.defaultVariant };
  // 9. Namespace.
  const ns = experiment.namespace;
  if (ns && ns.owners[segmentOf(unitId, ns.salt, ns.segments, ns.hashVersion)] !== experiment.id) {
    return { reason: Reason.NOT_IN_NAMESPACE, variant: experiment.defaultVariant };
  }
  // 10. Rollout.
  if (experiment.rollout < FULL_ROLLOUT && rolloutBucket(unitId, experiment.salt, experiment.hashVersion) >= experiment.rollout) {
    return { reason: Reason.NOT_IN_ROLLOUT, variant: experiment.defaultVariant };
  }
  // 11. Hashed.
  return { reason: Reason.NEW, variant: hashedVariant(experiment, unitId) };
}

/** The first holdout covering the experiment that holds the unit out (rule 7), else undefined. */
export function holdingOut(experiment: ExperimentConfig, unitId: string): HoldoutConfig | undefined {
  for (const h of experiment.holdouts) if (holdoutBucket(unitId, h.salt, h.hashVersion) < h.share) return h;
  return undefined;
}

/** The variant the hash picks for a unit, ignoring rollout, namespace and stored assignments. */
export function hashedVariant(experiment: ExperimentConfig, unitId: string): VariantConfig {
  return experiment.variants[pickVariantIndex(variantBucket(unitId, experiment.salt, experiment.hashVersion), experiment.weights)]!;
}

/** Buckets and segment behind an answer, for AssignOptions.explain. */
export function explainBuckets(experiment: ExperimentConfig, unitId: string) {
  const ns = experiment.namespace;
  return {
    variantBucket: variantBucket(unitId, experiment.salt, experiment.hashVersion),
    rolloutBucket: rolloutBucket(unitId, experiment.salt, experiment.hashVersion),
    segment: ns ? segmentOf(unitId, ns.salt, ns.segments, ns.hashVersion) : undefined,
  };
}
