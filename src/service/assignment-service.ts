import type { MessageInitShape } from "@bufbuild/protobuf";
import { AssignmentService } from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import {
  ExperimentStatus,
  type AssignmentColumnSchema,
  type AssignmentSchema,
  type AssignOptions,
  type ExplanationSchema,
} from "../../gen/ts/assignment/v1/types_pb.js";
import { explainBuckets, isEnrolled } from "../engine/evaluate.js";
import type { ExperimentConfig } from "../engine/experiment-config.js";
import { checkKey, checkUnitId, checkUnitType, isValidUnitType, UNIT_TYPE_RULE } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import type { ServiceHandlers } from "../grpc/handler-types.js";
import type { Assigner, AssignOptionsLike, Cell, CellResult } from "./assigner.js";
import type { ConfigRegistry } from "./config-registry.js";

export const MAX_BULK_UNITS = 10_000;
export const MAX_MATRIX_CELLS = 100_000;
export const MAX_EXPERIMENTS_PER_CALL = 1_000;

type AssignmentInit = MessageInitShape<typeof AssignmentSchema>;
type ColumnInit = MessageInitShape<typeof AssignmentColumnSchema>;
type ExplanationInit = MessageInitShape<typeof ExplanationSchema>;

function optionsOf(o: AssignOptions | undefined): AssignOptionsLike & { explain: boolean; includeParams: boolean } {
  return {
    dryRun: o?.dryRun ?? false,
    allowUnstored: o?.allowUnstored ?? false,
    explain: o?.explain ?? false,
    includeParams: o?.includeParams ?? false,
  };
}

function explanation(exp: ExperimentConfig | undefined, unitId: string, r: CellResult): ExplanationInit | undefined {
  if (!exp) return { layer: r.layer };
  return { ...explainBuckets(exp, unitId), layer: r.layer, hashVersion: exp.hashVersion };
}

function toAssignment(
  key: string,
  exp: ExperimentConfig | undefined,
  unitId: string,
  r: CellResult,
  o: ReturnType<typeof optionsOf>,
): AssignmentInit {
  return {
    experimentKey: key,
    variantKey: r.variant?.key ?? "",
    enrolled: isEnrolled(r.reason),
    reason: r.reason,
    stored: r.stored,
    experimentVersion: exp?.version ?? 0n,
    explanation: o.explain ? explanation(exp, unitId, r) : undefined,
    params: o.includeParams ? r.variant?.params : undefined,
  };
}

/** A packed column: legend entry 0 is "" (no variant), entries 1..n the experiment's variants. */
function toColumn(
  key: string,
  exp: ExperimentConfig | undefined,
  unitIds: readonly string[],
  results: readonly CellResult[],
  offset: number,
  o: ReturnType<typeof optionsOf>,
): ColumnInit {
  const n = unitIds.length;
  const legendIndex = new Map<number, number>();
  exp?.variants.forEach((v, i) => legendIndex.set(v.id, i + 1));
  const variantIndexes = new Array<number>(n);
  const reasons = new Array<number>(n);
  const enrolled = new Array<boolean>(n);
  const stored = new Array<boolean>(n);
  for (let i = 0; i < n; i++) {
    const r = results[offset + i];
    variantIndexes[i] = r.variant ? legendIndex.get(r.variant.id)! : 0;
    reasons[i] = r.reason;
    enrolled[i] = isEnrolled(r.reason);
    stored[i] = r.stored;
  }
  return {
    experimentKey: key,
    experimentVersion: exp?.version ?? 0n,
    legend: ["", ...(exp?.variants.map((v) => v.key) ?? [])],
    legendParams: o.includeParams ? [{}, ...(exp?.variants.map((v) => v.params ?? {}) ?? [])] : [],
    variantIndexes,
    reasons,
    enrolled,
    stored,
    explanations: o.explain ? unitIds.map((u, i) => explanation(exp, u, results[offset + i])!) : [],
  };
}

function checkUnitIds(unitIds: readonly string[], max: number): void {
  if (unitIds.length < 1 || unitIds.length > max) {
    throw invalidArgument("unit_ids", `must hold 1 to ${max} ids (got ${unitIds.length})`);
  }
}

function checkExperimentKeys(keys: readonly string[], min: number): void {
  if (keys.length < min || keys.length > MAX_EXPERIMENTS_PER_CALL) {
    throw invalidArgument("experiment_keys", `must hold ${min} to ${MAX_EXPERIMENTS_PER_CALL} keys (got ${keys.length})`);
  }
}

export function assignmentHandlers(registry: ConfigRegistry, assigner: Assigner): ServiceHandlers<typeof AssignmentService> {
  return {
    async assign(req) {
      checkKey("experiment_key", req.experimentKey);
      checkUnitId("unit_id", req.unitId);
      const unitType = checkUnitType("unit_type", req.unitType);
      const o = optionsOf(req.options);
      const exp = registry.get(req.experimentKey);
      const [r] = await assigner.assign([{ experiment: exp, unitId: req.unitId, unitType }], o);
      return { assignment: toAssignment(req.experimentKey, exp, req.unitId, r, o) };
    },

    async assignUnit(req) {
      const types = Object.keys(req.units);
      if (types.length === 0) throw invalidArgument("units", "must name at least one unit type and its id");
      for (const t of types) if (!isValidUnitType(t)) throw invalidArgument(`units["${t}"]`, `unit type ${UNIT_TYPE_RULE}`);
      checkExperimentKeys(req.experimentKeys, 0);
      const o = optionsOf(req.options);
      let keys: string[] = req.experimentKeys;
      if (keys.length === 0) {
        keys = registry
          .all()
          .filter(
            (e) =>
              (e.status === ExperimentStatus.RUNNING || e.status === ExperimentStatus.PAUSED) &&
              req.units[e.unitType] !== undefined &&
              (req.tag === "" || e.tags.includes(req.tag)),
          )
          .map((e) => e.key);
      }
      const cells: Cell[] = keys.map((k) => {
        const exp = registry.get(k);
        const unitType = exp?.unitType ?? "";
        const unitId = req.units[unitType];
        // No id of the experiment's type: rule 2 answers UNIT_TYPE_MISMATCH.
        return unitId === undefined
          ? { experiment: exp, unitId: req.units[types[0]], unitType: types[0] }
          : { experiment: exp, unitId, unitType };
      });
      const results = await assigner.assign(cells, o);
      return { assignments: keys.map((k, i) => toAssignment(k, cells[i].experiment, cells[i].unitId, results[i], o)) };
    },

    async bulkAssign(req) {
      const unitType = checkUnitType("unit_type", req.unitType);
      checkUnitIds(req.unitIds, MAX_BULK_UNITS);
      const o = optionsOf(req.options);
      const exp = registry.get(req.experimentKey);
      const results = await assigner.assign(
        req.unitIds.map((unitId) => ({ experiment: exp, unitId, unitType })),
        o,
      );
      return { column: toColumn(req.experimentKey, exp, req.unitIds, results, 0, o) };
    },

    async matrixAssign(req) {
      const unitType = checkUnitType("unit_type", req.unitType);
      checkExperimentKeys(req.experimentKeys, 1);
      checkUnitIds(req.unitIds, MAX_MATRIX_CELLS);
      const cellCount = req.unitIds.length * req.experimentKeys.length;
      if (cellCount > MAX_MATRIX_CELLS) {
        throw invalidArgument("unit_ids", `unit_ids x experiment_keys must be at most ${MAX_MATRIX_CELLS} cells (got ${cellCount})`);
      }
      const o = optionsOf(req.options);
      const exps = req.experimentKeys.map((k) => registry.get(k));
      const cells: Cell[] = [];
      for (const exp of exps) for (const unitId of req.unitIds) cells.push({ experiment: exp, unitId, unitType });
      const results = await assigner.assign(cells, o);
      return {
        columns: req.experimentKeys.map((k, j) => toColumn(k, exps[j], req.unitIds, results, j * req.unitIds.length, o)),
      };
    },
  };
}
