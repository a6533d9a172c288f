import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AssignmentService, StreamAssignRequest } from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import {
  ExperimentStatus,
  Layer,
  type AssignmentColumnSchema,
  type AssignmentSchema,
  type AssignOptions,
  type ExplanationSchema,
} from "../../gen/ts/assignment/v1/types_pb.js";
import { type Attributes, checkCallAttributes, checkUnitAttributes } from "../engine/attributes.js";
import { explainBuckets, isEnrolled } from "../engine/evaluate.js";
import type { ExperimentConfig } from "../engine/experiment-config.js";
import { checkKey, checkUnitId, checkUnitType, isValidUnitType, UNIT_TYPE_RULE } from "../engine/rules.js";
import { invalidArgument, unavailable } from "../errors.js";
import type { ServiceHandlers } from "./handler-types.js";
import type { Assigner, AssignOptionsLike, Cell, CellResult } from "./assigner.js";
import { MAX_BULK_UNITS, MAX_EXPERIMENTS_PER_CALL, MAX_MATRIX_CELLS, MAX_STREAM_EXPERIMENTS } from "assignment-client/limits";
import type { ConfigView } from "./config-registry.js";
import { type ParamsView, paramsHandlers } from "./params-handlers.js";
import { nextOrAbort } from "../util/next-or-abort.js";

/** Batches of one stream being answered at once; more are not read until the oldest is sent. */
export const STREAM_BATCHES_IN_FLIGHT = 4;

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

// Without explain and params an Assignment depends only on the experiment's configuration and
// the (interned) answer, so a warm page load answers the same few objects again and again: they
// are made once per configuration version and frozen, and the gRPC transport encodes each once (src/grpc/response-encoding.ts).
const sharedAssignments = new WeakMap<ExperimentConfig, Map<CellResult, AssignmentInit>>();

function toAssignment(
  key: string,
  exp: ExperimentConfig | undefined,
  unitId: string,
  r: CellResult,
  o: ReturnType<typeof optionsOf>,
): AssignmentInit {
  if (exp && !o.explain && !o.includeParams && exp.key === key) {
    let byResult = sharedAssignments.get(exp);
    if (!byResult) sharedAssignments.set(exp, (byResult = new Map()));
    let a = byResult.get(r);
    if (!a) byResult.set(r, (a = Object.freeze(newAssignment(key, exp, unitId, r, o))));
    return a;
  }
  return newAssignment(key, exp, unitId, r, o);
}

function newAssignment(
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
    const r = results[offset + i]!;
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
    explanations: o.explain ? unitIds.map((u, i) => explanation(exp, u, results[offset + i]!)!) : [],
  };
}

function checkUnitIds(unitIds: readonly string[], max: number): void {
  if (unitIds.length < 1 || unitIds.length > max) {
    throw invalidArgument("unit_ids", `must hold 1 to ${max} ids (got ${unitIds.length})`);
  }
}

function checkExperimentKeys(keys: readonly string[], min: number, max = MAX_EXPERIMENTS_PER_CALL, field = "experiment_keys"): void {
  if (keys.length < min || keys.length > max) {
    throw invalidArgument(field, `must hold ${min} to ${max} keys (got ${keys.length})`);
  }
}

/**
 * @param shutdown aborted when the server begins to shut down: streams stop reading, answer the
 * batches already read, and end with UNAVAILABLE saying how many batches were answered.
 */
export function assignmentHandlers(
  registry: ConfigView & ParamsView,
  assigner: Assigner,
  shutdown: AbortSignal = new AbortController().signal,
): ServiceHandlers<typeof AssignmentService> {
  /** Answers one batch of a stream or matrix: cells experiment-major, one column per experiment.
   * `onStoredFound` learns whether any cell's answer came from a stored assignment found outside
   * this process (in Redis or PostgreSQL). */
  const answerColumns = async (
    keys: readonly string[],
    unitType: string,
    unitIds: readonly string[],
    o: ReturnType<typeof optionsOf>,
    attributes: Attributes | readonly Attributes[],
    onStoredFound?: (found: boolean) => void,
  ) => {
    const exps = keys.map((k) => registry.get(k));
    const results = await assigner.assignGrid(exps, unitIds, unitType, o, attributes);
    if (onStoredFound) onStoredFound(results.some((r) => r.layer === Layer.REDIS || r.layer === Layer.POSTGRES));
    return keys.map((k, j) => toColumn(k, exps[j], unitIds, results, j * unitIds.length, o));
  };

  return {
    ...paramsHandlers(registry, assigner),

    async assign(req) {
      checkKey("experiment_key", req.experimentKey);
      checkUnitId("unit_id", req.unitId);
      const unitType = checkUnitType("unit_type", req.unitType);
      const attributes = checkCallAttributes("attributes", req.attributes);
      const o = optionsOf(req.options);
      const exp = registry.get(req.experimentKey);
      const [r] = await assigner.assign([{ experiment: exp, unitId: req.unitId, unitType, attributes }], o);
      return { assignment: toAssignment(req.experimentKey, exp, req.unitId, r!, o) };
    },

    // Not async: a page load answered from configuration and the in-process cache (assignNow) is
    // answered in the same turn, without a promise (the transports accept a value or a promise).
    assignUnit(req) {
      const types = Object.keys(req.units);
      if (types.length === 0) throw invalidArgument("units", "must name at least one unit type and its id");
      for (const t of types) if (!isValidUnitType(t)) throw invalidArgument(`units["${t}"]`, `unit type ${UNIT_TYPE_RULE}`);
      checkExperimentKeys(req.experimentKeys, 0);
      const attributes = checkCallAttributes("attributes", req.attributes);
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
        const firstType = types[0]!;
        return unitId === undefined
          ? { experiment: exp, unitId: req.units[firstType]!, unitType: firstType, attributes }
          : { experiment: exp, unitId, unitType, attributes };
      });
      const answer = (results: CellResult[]) => ({
        assignments: keys.map((k, i) => toAssignment(k, cells[i]!.experiment, cells[i]!.unitId, results[i]!, o)),
      });
      const results = assigner.assignNow(cells, o);
      return Array.isArray(results) ? answer(results) : results.then(answer);
    },

    async bulkAssign(req) {
      const unitType = checkUnitType("unit_type", req.unitType);
      checkUnitIds(req.unitIds, MAX_BULK_UNITS);
      const attributes = checkUnitAttributes(
        "unit_attributes",
        req.unitAttributes,
        req.unitIds.length,
        checkCallAttributes("attributes", req.attributes),
      );
      const o = optionsOf(req.options);
      const exp = registry.get(req.experimentKey);
      const results = await assigner.assignGrid([exp], req.unitIds, unitType, o, attributes);
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
      const attributes = checkUnitAttributes(
        "unit_attributes",
        req.unitAttributes,
        req.unitIds.length,
        checkCallAttributes("attributes", req.attributes),
      );
      return { columns: await answerColumns(req.experimentKeys, unitType, req.unitIds, optionsOf(req.options), attributes) };
    },

    async *streamAssign(requests, ctx) {
      const it = requests[Symbol.asyncIterator]();
      const first = await nextOrAbort(it, shutdown);
      if (first === "aborted") throw unavailable("server is shutting down: no batch was answered; send the stream to another server");
      if (first.done) return;
      const setup = first.value.setup;
      if (!setup) throw invalidArgument("setup", "must be set in the first message of the stream");
      const keys = setup.experimentKeys;
      checkExperimentKeys(keys, 1, MAX_STREAM_EXPERIMENTS, "setup.experiment_keys");
      const unitType = checkUnitType("setup.unit_type", setup.unitType);
      const callAttributes = checkCallAttributes("setup.attributes", setup.attributes);
      const o = optionsOf(setup.options);
      const maxIds = Math.min(MAX_BULK_UNITS, Math.floor(MAX_MATRIX_CELLS / keys.length));

      // Batches are answered concurrently but sent in order, each as soon as it and those before it
      // are done; at most STREAM_BATCHES_IN_FLIGHT are read ahead, so a caller that stops reading
      // stops the server from reading.
      const inFlight: Promise<ColumnInit[]>[] = [];
      // A cohort of new units finds nothing stored: once a whole batch found nothing in Redis or
      // PostgreSQL, later batches skip the Redis read (which could only miss) until one finds
      // something stored again. Answers are the same either way; see AssignOptionsLike.
      let redisMisses = false;
      const learn = (found: boolean) => void (redisMisses = !found);
      let batch = 0n;
      let position = 0;
      let message: StreamAssignRequest | undefined = first.value;
      while (message) {
        if (ctx.signal.aborted) return;
        if (position > 0 && message.setup) throw invalidArgument(`messages[${position}].setup`, "is allowed only in the first message");
        const ids = message.unitIds;
        if (ids.length > maxIds) {
          throw invalidArgument(`messages[${position}].unit_ids`, `must hold at most ${maxIds} ids per message (got ${ids.length})`);
        }
        const attributes = checkUnitAttributes(`messages[${position}].unit_attributes`, message.unitAttributes, ids.length, callAttributes);
        if (ids.length > 0) {
          const p = answerColumns(keys, unitType, ids, { ...o, skipRedisRead: redisMisses, paceToRedis: true }, attributes, learn);
          p.catch(() => {}); // awaited below, in order; this keeps an early failure from being unhandled
          inFlight.push(p);
        }
        while (inFlight.length >= STREAM_BATCHES_IN_FLIGHT) yield { batch: batch++, columns: await inFlight.shift()! };
        position++;
        // While the next message is awaited, the batches that finished are answered: a caller
        // that waits for an answer before it sends more (a bounded read-ahead of its own, of any
        // size) is never left waiting for a batch that is done.
        const pending = nextOrAbort(it, shutdown);
        let next: Awaited<typeof pending> | undefined;
        while (next === undefined) {
          const head = inFlight[0];
          const first = head
            ? await Promise.race([
                pending.then((n) => ({ n })),
                head.then(
                  () => undefined,
                  () => undefined,
                ),
              ])
            : { n: await pending };
          if (first) next = first.n;
          else yield { batch: batch++, columns: await inFlight.shift()! };
        }
        if (next === "aborted") {
          while (inFlight.length > 0) yield { batch: batch++, columns: await inFlight.shift()! };
          throw unavailable(`server is shutting down: batches 0 to ${batch - 1n} were answered (and stored); send the rest again`);
        }
        message = next.done ? undefined : next.value;
      }
      while (inFlight.length > 0) yield { batch: batch++, columns: await inFlight.shift()! };
    },
  };
}
