import type { JsonObject } from "@bufbuild/protobuf";
import type { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { failedPrecondition, invalidArgument } from "../errors.js";
import { checkParams, checkParamsTotal, checkVariantNamed } from "./experiment-fields.js";
import { checkVariantKey } from "./rules.js";

/** The rule of UpdateExperiment (SPEC.md "What may change after creation"), without I/O: the
 * experiment's new state from its current one and what the call asks to change. Field names in
 * errors are those of UpdateExperimentRequest. */

export interface VariantState {
  /** Stable for the life of the experiment: stored assignments record it. */
  id: number;
  key: string;
  weight: number;
  params?: JsonObject;
}

/** The fields UpdateExperiment may change. */
export interface ExperimentState {
  variants: VariantState[];
  rollout: number;
  status: ExperimentStatus;
  defaultVariant: string | null;
  winner: string | null;
  tags: string[];
  description: string;
  /** The targeting condition (CEL over `attributes`, SPEC.md rule 8); "" when none. */
  condition: string;
}

export interface VariantChange {
  key: string;
  weight: number;
  params?: JsonObject | undefined;
}

/** What a call asks to change; absent: unchanged. Variants, rollout, status, tags and description
 * come checked field by field (experiment-fields.ts, rules.ts); what depends on the current state
 * is checked here. */
export interface ExperimentChanges {
  variants?: readonly VariantChange[];
  rollout?: number;
  status?: ExperimentStatus;
  /** "" clears it. */
  winner?: string;
  /** "" clears it (the first variant is the default then). */
  defaultVariant?: string;
  tags?: string[];
  description?: string;
  /** Already checked (compileCondition); "" removes targeting. */
  condition?: string;
}

/**
 * The variants after an update. Existing variants are matched by key and keep their id and their
 * order; new keys are appended after them with fresh ids (above the highest current one). A variant
 * left out is removed (the store refuses that when stored assignments use it).
 */
export function mergeVariants(field: string, current: readonly VariantState[], requested: readonly VariantChange[]): VariantState[] {
  const byKey = new Map(current.map((v) => [v.key, v]));
  let nextId = Math.max(...current.map((v) => v.id)) + 1;
  const kept = requested.filter((v) => byKey.has(v.key)).map((v) => v.key);
  const order = current.filter((v) => kept.includes(v.key)).map((v) => v.key);
  if (kept.some((k, i) => k !== order[i]))
    throw invalidArgument(field, "existing variants must keep their order; new variants are appended");
  let appended = false;
  const variants = requested.map((v, i) => {
    const prev = byKey.get(v.key);
    if (!prev) appended = true;
    else if (appended) throw invalidArgument(`${field}[${i}]`, "new variants must come after the existing ones");
    return { id: prev ? prev.id : nextId++, key: v.key, weight: v.weight, params: checkParams(`${field}[${i}].params`, v.params) };
  });
  checkParamsTotal(`${field}[].params`, variants);
  return variants;
}

/** The experiment's state after `changes`. A default or winner that names a variant the update
 * removes is FAILED_PRECONDITION; one naming no variant at all, INVALID_ARGUMENT. */
export function applyExperimentChanges(current: ExperimentState, changes: ExperimentChanges): ExperimentState {
  const variants = changes.variants ? mergeVariants("variants.variants", current.variants, changes.variants) : current.variants;
  const winner =
    changes.winner === undefined
      ? current.winner
      : changes.winner === ""
        ? null
        : checkVariantNamed("winner", variants, checkVariantKey("winner", changes.winner));
  if (winner !== null && !variants.some((v) => v.key === winner)) {
    throw failedPrecondition(`winner: "${winner}" is no longer a variant; name another winner or clear it`);
  }
  let defaultVariant = current.defaultVariant;
  if (changes.defaultVariant !== undefined) {
    defaultVariant = changes.defaultVariant === "" ? null : checkVariantNamed("default_variant", variants, changes.defaultVariant);
  }
  if (defaultVariant !== null && !variants.some((v) => v.key === defaultVariant)) {
    throw failedPrecondition(`default_variant: "${defaultVariant}" is no longer a variant; name another default`);
  }
  return {
    variants,
    rollout: changes.rollout ?? current.rollout,
    status: changes.status ?? current.status,
    defaultVariant,
    winner,
    tags: changes.tags ?? current.tags,
    description: changes.description ?? current.description,
    condition: changes.condition ?? current.condition,
  };
}
