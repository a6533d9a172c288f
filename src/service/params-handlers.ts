import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  AssignmentService,
  ParamsColumnSchema,
  ResolvedParamsChoiceSchema,
  ResolvedParamsSchema,
} from "../../gen/ts/assignment/v1/assignment_service_pb.js";
import { Reason } from "../../gen/ts/assignment/v1/types_pb.js";
import { type Attributes, checkCallAttributes, checkUnitAttributes } from "../engine/attributes.js";
import { segmentOf } from "../engine/buckets.js";
import { isEnrolled } from "../engine/evaluate.js";
import type { ExperimentConfig, NamespaceConfig } from "../engine/experiment-config.js";
import { mergeParams } from "../engine/params.js";
import { checkKey, checkUnitType, isValidUnitId, isValidUnitType, UNIT_TYPE_RULE } from "../engine/rules.js";
import { invalidArgument, notFound } from "../errors.js";
import { MAX_BULK_UNITS, MAX_MATRIX_CELLS, MAX_NAMESPACES_PER_CALL } from "assignment-client/limits";
import type { Assigner, AssignOptionsLike, Cell, CellResult } from "./assigner.js";
import type { ConfigRegistry } from "./config-registry.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<ServiceHandlers<typeof AssignmentService>, "resolveParams" | "bulkResolveParams">;
type ResolvedInit = MessageInitShape<typeof ResolvedParamsSchema>;
type ColumnInit = MessageInitShape<typeof ParamsColumnSchema>;
type ChoiceInit = MessageInitShape<typeof ResolvedParamsChoiceSchema>;

/** What the params calls read of the configuration. */
export type ParamsView = Pick<ConfigRegistry, "namespace" | "allNamespaces" | "byId" | "all">;

/** The namespaces a call asks for: those named (NOT_FOUND for an unknown or archived one), else
 * every namespace `eligible` accepts, holding an experiment tagged `tag` when one is given. */
function namespacesOf(
  registry: ParamsView,
  keys: readonly string[],
  tag: string,
  field: string,
  eligible: (ns: NamespaceConfig) => boolean,
): NamespaceConfig[] {
  if (keys.length > MAX_NAMESPACES_PER_CALL) {
    throw invalidArgument(field, `must hold at most ${MAX_NAMESPACES_PER_CALL} keys (got ${keys.length})`);
  }
  if (keys.length > 0) {
    return keys.map((k, i) => {
      checkKey(`${field}[${i}]`, k);
      const ns = registry.namespace(k);
      if (!ns) throw notFound(`${field}[${i}]: no namespace "${k}" (or it is archived)`);
      return ns;
    });
  }
  if (tag !== "") checkKey("tag", tag);
  const tagged =
    tag === ""
      ? undefined
      : new Set(
          registry
            .all()
            .filter((e) => e.tags.includes(tag) && e.namespace)
            .map((e) => e.namespace!.id),
        );
  return registry.allNamespaces().filter((ns) => eligible(ns) && (!tagged || tagged.has(ns.id)));
}

/** The experiment holding the unit's segment of `ns`, if one is served. */
function holderOf(registry: ParamsView, ns: NamespaceConfig, unitId: string): ExperimentConfig | undefined {
  const owner = ns.owners[segmentOf(unitId, ns.salt, ns.segments, ns.hashVersion)]!;
  if (owner === 0) return undefined;
  const e = registry.byId(owner);
  // An experiment that left the namespace (released, then allocated elsewhere) holds nothing here.
  return e?.namespace?.id === ns.id ? e : undefined;
}

function optionsOf(o: { dryRun: boolean; allowUnstored: boolean } | undefined): AssignOptionsLike {
  return { dryRun: o?.dryRun ?? false, allowUnstored: o?.allowUnstored ?? false };
}

/**
 * ResolveParams and BulkResolveParams (SPEC.md "Namespaces"): per namespace, the experiment
 * holding the unit's segment is evaluated by the assigner like any assign call (so a NEW answer is
 * stored, a dry run stores nothing), and the answer is the namespace's default params with the
 * params of the variant it answered laid over them key by key (mergeParams): a unit in no
 * experiment gets the defaults alone; one not enrolled gets them under the default variant's params.
 */
export function paramsHandlers(registry: ParamsView, assigner: Assigner): Handlers {
  return {
    async resolveParams(req) {
      const types = Object.keys(req.units);
      if (types.length === 0) throw invalidArgument("units", "must name at least one unit type and its id");
      for (const t of types) if (!isValidUnitType(t)) throw invalidArgument(`units["${t}"]`, `unit type ${UNIT_TYPE_RULE}`);
      const attributes = checkCallAttributes("attributes", req.attributes);
      const namespaces = namespacesOf(registry, req.namespaceKeys, req.tag, "namespace_keys", (ns) => req.units[ns.unitType] !== undefined);
      const answers: ResolvedInit[] = [];
      const cells: Cell[] = [];
      const asked: number[] = [];
      namespaces.forEach((ns, i) => {
        const defaults = ns.defaultParams;
        const unitId = req.units[ns.unitType];
        const base: ResolvedInit = { namespaceKey: ns.key, params: mergeParams(defaults, undefined) };
        if (unitId === undefined) answers.push({ ...base, reason: Reason.UNIT_TYPE_MISMATCH });
        else if (!isValidUnitId(unitId)) answers.push({ ...base, reason: Reason.INVALID_UNIT });
        else {
          answers.push(base);
          const e = holderOf(registry, ns, unitId);
          if (e) {
            cells.push({ experiment: e, unitId, unitType: ns.unitType, attributes });
            asked.push(i);
          }
        }
      });
      if (cells.length > 0) {
        const results = await assigner.assign(cells, optionsOf(req.options));
        asked.forEach((i, k) => {
          const ns = namespaces[i]!;
          answers[i] = resolved(ns, cells[k]!.experiment!, results[k]!);
        });
      }
      return { namespaces: answers };
    },

    async bulkResolveParams(req) {
      const unitType = checkUnitType("unit_type", req.unitType);
      const ids = req.unitIds;
      if (ids.length < 1 || ids.length > MAX_BULK_UNITS) {
        throw invalidArgument("unit_ids", `must hold 1 to ${MAX_BULK_UNITS} ids (got ${ids.length})`);
      }
      // The call's attributes, with each unit's laid over them (rule 8 reads them).
      const attributes = checkUnitAttributes(
        "unit_attributes",
        req.unitAttributes,
        ids.length,
        checkCallAttributes("attributes", req.attributes),
      );
      const perUnit = Array.isArray(attributes) ? (attributes as readonly Attributes[]) : undefined;
      const attributesAt = (i: number): Attributes => (perUnit ? perUnit[i]! : (attributes as Attributes));
      const namespaces = namespacesOf(registry, req.namespaceKeys, req.tag, "namespace_keys", (ns) => ns.unitType === unitType);
      if (ids.length * namespaces.length > MAX_MATRIX_CELLS) {
        throw invalidArgument(
          "unit_ids",
          `unit_ids x namespaces must be at most ${MAX_MATRIX_CELLS} (got ${ids.length * namespaces.length})`,
        );
      }
      const o = optionsOf(req.options);
      const columns: ColumnInit[] = [];
      for (const ns of namespaces) {
        const n = ids.length;
        const reasons = new Array<Reason>(n).fill(Reason.UNSPECIFIED);
        const enrolled = new Array<boolean>(n).fill(false);
        const stored = new Array<boolean>(n).fill(false);
        const legendIndexes = new Array<number>(n).fill(0);
        const legend: ChoiceInit[] = [{ params: mergeParams(ns.defaultParams, undefined) }];
        const legendOf = new Map<string, number>();
        const cells: Cell[] = [];
        const positions: number[] = [];
        ids.forEach((unitId, i) => {
          if (ns.unitType !== unitType) reasons[i] = Reason.UNIT_TYPE_MISMATCH;
          else if (!isValidUnitId(unitId)) reasons[i] = Reason.INVALID_UNIT;
          else {
            const e = holderOf(registry, ns, unitId);
            if (e) {
              cells.push({ experiment: e, unitId, unitType, attributes: attributesAt(i) });
              positions.push(i);
            }
          }
        });
        const results = cells.length > 0 ? await assigner.assign(cells, o) : [];
        results.forEach((r, k) => {
          const i = positions[k]!;
          const e = cells[k]!.experiment!;
          reasons[i] = r.reason;
          enrolled[i] = isEnrolled(r.reason);
          stored[i] = r.stored;
          if (!r.variant) return;
          const id = `${e.id}:${r.variant.id}`;
          let index = legendOf.get(id);
          if (index === undefined) {
            index = legend.length;
            legendOf.set(id, index);
            legend.push({
              params: mergeParams(ns.defaultParams, r.variant.params),
              experimentKey: e.key,
              variantKey: r.variant.key,
              experimentVersion: e.version,
            });
          }
          legendIndexes[i] = index;
        });
        columns.push({ namespaceKey: ns.key, legend, legendIndexes, reasons, enrolled, stored });
      }
      return { columns };
    },
  };
}

/** A unit's answer for a namespace whose experiment `e` answered `r`. */
function resolved(ns: NamespaceConfig, e: ExperimentConfig, r: CellResult): ResolvedInit {
  return {
    namespaceKey: ns.key,
    // The variant answered (the default variant when not enrolled) laid over the defaults.
    params: mergeParams(ns.defaultParams, r.variant?.params),
    experimentKey: e.key,
    variantKey: r.variant?.key ?? "",
    reason: r.reason,
    enrolled: isEnrolled(r.reason),
    stored: r.stored,
    experimentVersion: e.version,
  };
}
