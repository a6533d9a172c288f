import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { ExperimentStatus, Reason, Layer } from "../../gen/ts/assignment/v1/types_pb.js";

export const statusName = (s: ExperimentStatus): string =>
  ({
    [ExperimentStatus.DRAFT]: "draft",
    [ExperimentStatus.RUNNING]: "running",
    [ExperimentStatus.PAUSED]: "paused",
    [ExperimentStatus.STOPPED]: "stopped",
    [ExperimentStatus.UNSPECIFIED]: "unspecified",
  })[s] ?? String(s);

/** Basis points as a percentage: 2500 -> "25%", 1234 -> "12.34%". */
export const pct = (bp: number): string => `${Number((bp / 100).toFixed(2))}%`;

export const share = (x: number): string => `${(x * 100).toFixed(2)}%`;

export const when = (t: Timestamp | undefined): string => (t ? timestampDate(t).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");

/** What each reason means, in words (SPEC.md's rules). */
export const REASON_WORDS: Record<number, string> = {
  [Reason.UNKNOWN_EXPERIMENT]: "no such experiment",
  [Reason.INVALID_UNIT]: "the unit id is not valid",
  [Reason.UNIT_TYPE_MISMATCH]: "no id of the experiment's unit type was given",
  [Reason.OVERRIDE]: "an override forces this variant",
  [Reason.NOT_RUNNING]: "not running: the default variant",
  [Reason.WINNER]: "stopped with a winner: everyone gets the winner",
  [Reason.STICKY]: "the unit's stored assignment",
  [Reason.PAUSED]: "paused and the unit has no stored assignment: the default variant",
  [Reason.NOT_IN_NAMESPACE]: "the unit's segment belongs to another experiment of the namespace",
  [Reason.NOT_IN_ROLLOUT]: "the unit's rollout bucket is above the rollout",
  [Reason.NEW]: "would be newly assigned by hashing (dry run: not stored)",
  [Reason.HOLDOUT]: "a holdout holds the unit out",
  [Reason.NOT_TARGETED]: "the targeting condition is not true for these attributes",
};

export const reasonName = (r: Reason): string => (Reason[r] ?? String(r)).toLowerCase();
export const layerName = (l: Layer): string => (Layer[l] ?? String(l)).toLowerCase();

/** Which variant a variant bucket falls in (SPEC.md: the first i with bucket < w_0 + ... + w_i). */
function variantOf(bucket: number, weights: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    sum += weights[i]!;
    if (bucket < sum) return i;
  }
  return -1;
}

/**
 * The share of future new units whose variant changes when the weights change from `before` to
 * `after` (new variants appended at the end): the variant buckets (0..9999) whose variant differs.
 * Stored units never move: they answer STICKY.
 */
export function movedShare(before: readonly number[], after: readonly number[]): number {
  let moved = 0;
  for (let b = 0; b < 10000; b++) if (variantOf(b, before) !== variantOf(b, after)) moved++;
  return moved / 10000;
}
