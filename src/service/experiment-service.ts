import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { JsonObject, JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import {
  ExperimentStatus,
  Source,
  type ExperimentSchema,
  type NamespaceSchema,
  type Variant,
} from "../../gen/ts/assignment/v1/types_pb.js";
import { CURRENT_HASH_VERSION } from "../engine/hash.js";
import {
  checkBasisPoints,
  checkKey,
  checkSalt,
  checkSegments,
  checkUnitId,
  checkUnitType,
  checkVariantKey,
  checkVariants,
  DEFAULT_SEGMENTS,
  FULL_ROLLOUT,
} from "../engine/rules.js";
import { sampleRatio } from "../engine/sample-ratio.js";
import { invalidArgument, failedPrecondition } from "../errors.js";
import type { ServiceHandlers } from "./handler-types.js";
import type { ExperimentRecord, ExperimentStore, NamespaceRecord, VariantRecord } from "../store/experiment-store.js";
import type { AssignmentTransfers } from "./assignment-transfers.js";
import {
  MAX_DESCRIPTION_BYTES,
  MAX_EXPERIMENT_PARAMS_BYTES,
  MAX_OVERRIDES_PER_CALL,
  MAX_PARAMS_BYTES,
  MAX_TAGS,
} from "../protocol-limits.js";
import type { ConfigRegistry } from "./config-registry.js";

const STATUSES = [ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED, ExperimentStatus.STOPPED];

function toExperiment(r: ExperimentRecord): MessageInitShape<typeof ExperimentSchema> {
  return {
    key: r.key,
    salt: r.salt,
    unitType: r.unitType,
    hashVersion: r.hashVersion,
    variants: r.variants.map((v) => ({ key: v.key, weight: v.weight, params: v.params })),
    rollout: r.rollout,
    status: r.status,
    defaultVariant: r.defaultVariant ?? r.variants[0].key,
    winner: r.winner ?? "",
    tags: r.tags,
    description: r.description,
    namespace: r.namespaceKey ?? "",
    segments: r.segmentCount,
    version: r.version,
    createTime: timestampFromDate(r.createdAt),
    updateTime: timestampFromDate(r.updatedAt),
  };
}

function toNamespace(n: NamespaceRecord): MessageInitShape<typeof NamespaceSchema> {
  const allocated = [...n.allocations.values()].reduce((a, b) => a + b, 0);
  return {
    key: n.key,
    salt: n.salt,
    unitType: n.unitType,
    segments: n.segments,
    freeSegments: n.segments - allocated,
    allocations: [...n.allocations].map(([experimentKey, segments]) => ({ experimentKey, segments })),
    createTime: timestampFromDate(n.createdAt),
  };
}

function checkStatus(field: string, s: ExperimentStatus): ExperimentStatus {
  if (!STATUSES.includes(s)) throw invalidArgument(field, "must be DRAFT, RUNNING, PAUSED or STOPPED");
  return s;
}

function checkTags(field: string, tags: readonly string[]): string[] {
  if (tags.length > MAX_TAGS) throw invalidArgument(field, `must hold at most ${MAX_TAGS} tags`);
  tags.forEach((t, i) => checkKey(`${field}[${i}]`, t));
  return [...new Set(tags)];
}

function checkDescription(field: string, d: string): string {
  if (Buffer.byteLength(d) > MAX_DESCRIPTION_BYTES || d.includes("\u0000")) {
    throw invalidArgument(field, `must be at most ${MAX_DESCRIPTION_BYTES} bytes without U+0000`);
  }
  return d;
}

function variantNamed(field: string, variants: readonly VariantRecord[], key: string): string {
  if (!variants.some((v) => v.key === key))
    throw invalidArgument(field, `must name one of the variants (${variants.map((v) => v.key).join(", ")})`);
  return key;
}

function checkParamsTotal(field: string, variants: readonly { params?: JsonObject }[]): void {
  const total = variants.reduce((n, v) => n + (v.params ? Buffer.byteLength(JSON.stringify(v.params)) : 0), 0);
  if (total > MAX_EXPERIMENT_PARAMS_BYTES) {
    throw invalidArgument(
      field,
      `params of all variants together must be at most ${MAX_EXPERIMENT_PARAMS_BYTES} bytes as JSON (got ${total})`,
    );
  }
}

function paramsOf(field: string, v: Variant): JsonObject | undefined {
  if (!v.params || Object.keys(v.params).length === 0) return undefined;
  checkJson(field, v.params);
  if (Buffer.byteLength(JSON.stringify(v.params)) > MAX_PARAMS_BYTES) {
    throw invalidArgument(field, `must be at most ${MAX_PARAMS_BYTES} bytes as JSON`);
  }
  return v.params;
}

/** Params are stored as jsonb, which cannot hold U+0000, and JSON has no NaN or infinities (a
 * Struct's number_value can): refused naming the field rather than failing in the database or
 * being stored as null. */
function checkJson(field: string, value: JsonValue): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalidArgument(field, "numbers must be finite (JSON has no NaN or infinities)");
  } else if (typeof value === "string") {
    if (value.includes("\u0000")) throw invalidArgument(field, "must not contain U+0000");
  } else if (Array.isArray(value)) {
    for (const x of value) checkJson(field, x);
  } else if (value !== null && typeof value === "object") {
    for (const [k, x] of Object.entries(value)) {
      if (k.includes("\u0000")) throw invalidArgument(field, "must not contain U+0000");
      checkJson(field, x);
    }
  }
}

export function experimentHandlers(
  store: ExperimentStore,
  registry: ConfigRegistry,
  transfers: AssignmentTransfers,
): ServiceHandlers<typeof ExperimentService> {
  /** Admin calls return only once this server serves the change. */
  const refreshed = async <T>(value: T): Promise<T> => {
    await registry.refresh();
    return value;
  };

  return {
    async createExperiment(req) {
      const key = checkKey("key", req.key);
      const salt = checkSalt("salt", req.salt ?? key);
      const unitType = checkUnitType("unit_type", req.unitType);
      checkVariants("variants", req.variants);
      const variants = req.variants.map((v, id) => ({ id, key: v.key, weight: v.weight, params: paramsOf(`variants[${id}].params`, v) }));
      checkParamsTotal("variants[].params", variants);
      const rollout = checkBasisPoints("rollout", req.rollout ?? FULL_ROLLOUT);
      const status = req.status === ExperimentStatus.UNSPECIFIED ? ExperimentStatus.DRAFT : checkStatus("status", req.status);
      if (status === ExperimentStatus.STOPPED) throw invalidArgument("status", "a new experiment must be DRAFT, RUNNING or PAUSED");
      const defaultVariant = req.defaultVariant === "" ? null : variantNamed("default_variant", variants, req.defaultVariant);
      const record = await store.createExperiment({
        key,
        salt,
        unitType,
        hashVersion: CURRENT_HASH_VERSION,
        variants,
        rollout,
        status,
        defaultVariant,
        tags: checkTags("tags", req.tags),
        description: checkDescription("description", req.description),
      });
      return refreshed({ experiment: toExperiment(record) });
    },

    async getExperiment(req) {
      return { experiment: toExperiment(await store.getExperiment(checkKey("key", req.key))) };
    },

    async listExperiments(req) {
      if (req.status !== ExperimentStatus.UNSPECIFIED) checkStatus("status", req.status);
      const all = await store.listExperiments();
      return {
        experiments: all
          .filter(
            (e) =>
              (req.status === ExperimentStatus.UNSPECIFIED || e.status === req.status) &&
              (req.tag === "" || e.tags.includes(req.tag)) &&
              (req.namespace === "" || e.namespaceKey === req.namespace),
          )
          .map(toExperiment),
      };
    },

    async updateExperiment(req) {
      const key = checkKey("key", req.key);
      if (req.version === 0n) throw invalidArgument("version", "must be the experiment's current version (from GetExperiment)");
      if (req.variants) checkVariants("variants.variants", req.variants.variants);
      if (req.rollout !== undefined) checkBasisPoints("rollout", req.rollout);
      if (req.status !== ExperimentStatus.UNSPECIFIED) checkStatus("status", req.status);
      const tags = req.tags ? checkTags("tags.tags", req.tags.tags) : undefined;
      if (req.description !== undefined) checkDescription("description", req.description);
      const record = await store.updateExperiment(key, req.version, (cur) => {
        let variants = cur.variants;
        if (req.variants) {
          // Existing variants are matched by key and keep their id; new keys get fresh ids.
          const byKey = new Map(cur.variants.map((v) => [v.key, v]));
          let nextId = Math.max(...cur.variants.map((v) => v.id)) + 1;
          const kept = req.variants.variants.filter((v) => byKey.has(v.key)).map((v) => v.key);
          const order = cur.variants.filter((v) => kept.includes(v.key)).map((v) => v.key);
          if (kept.some((k, i) => k !== order[i])) {
            throw invalidArgument("variants.variants", "existing variants must keep their order; new variants are appended");
          }
          let appended = false;
          variants = req.variants.variants.map((v, i) => {
            const prev = byKey.get(v.key);
            if (!prev) appended = true;
            else if (appended) throw invalidArgument(`variants.variants[${i}]`, "new variants must come after the existing ones");
            return { id: prev ? prev.id : nextId++, key: v.key, weight: v.weight, params: paramsOf(`variants.variants[${i}].params`, v) };
          });
          checkParamsTotal("variants.variants[].params", variants);
        }
        const status = req.status === ExperimentStatus.UNSPECIFIED ? cur.status : req.status;
        const winner =
          req.winner === undefined
            ? cur.winner
            : req.winner === ""
              ? null
              : variantNamed("winner", variants, checkVariantKey("winner", req.winner));
        if (winner !== null && !variants.some((v) => v.key === winner)) {
          throw failedPrecondition(`winner: "${winner}" is no longer a variant; name another winner or clear it`);
        }
        let defaultVariant = cur.defaultVariant;
        if (req.defaultVariant !== undefined) {
          defaultVariant = req.defaultVariant === "" ? null : variantNamed("default_variant", variants, req.defaultVariant);
        }
        if (defaultVariant !== null && !variants.some((v) => v.key === defaultVariant)) {
          throw failedPrecondition(`default_variant: "${defaultVariant}" is no longer a variant; name another default`);
        }
        return {
          variants,
          rollout: req.rollout ?? cur.rollout,
          status,
          defaultVariant,
          winner,
          tags: tags ?? cur.tags,
          description: req.description ?? cur.description,
        };
      });
      return refreshed({ experiment: toExperiment(record) });
    },

    async createNamespace(req) {
      const key = checkKey("key", req.key);
      const salt = checkSalt("salt", req.salt ?? key);
      const unitType = checkUnitType("unit_type", req.unitType);
      const segments = checkSegments("segments", req.segments ?? DEFAULT_SEGMENTS);
      return refreshed({ namespace: toNamespace(await store.createNamespace(key, salt, unitType, segments)) });
    },

    async getNamespace(req) {
      return { namespace: toNamespace(await store.getNamespace(checkKey("key", req.key))) };
    },

    async listNamespaces() {
      return { namespaces: (await store.listNamespaces()).map(toNamespace) };
    },

    async allocateSegments(req) {
      checkKey("namespace_key", req.namespaceKey);
      checkKey("experiment_key", req.experimentKey);
      if (req.segments < 1) throw invalidArgument("segments", "must be at least 1");
      const r = await store.allocateSegments(req.namespaceKey, req.experimentKey, req.segments);
      return refreshed({ namespace: toNamespace(r.namespace), experiment: toExperiment(r.experiment) });
    },

    async releaseSegments(req) {
      checkKey("namespace_key", req.namespaceKey);
      checkKey("experiment_key", req.experimentKey);
      const r = await store.releaseSegments(req.namespaceKey, req.experimentKey);
      return refreshed({ namespace: toNamespace(r.namespace), experiment: toExperiment(r.experiment), released: r.released });
    },

    async setOverrides(req) {
      const key = checkKey("experiment_key", req.experimentKey);
      if (req.overrides.length < 1 || req.overrides.length > MAX_OVERRIDES_PER_CALL) {
        throw invalidArgument("overrides", `must hold 1 to ${MAX_OVERRIDES_PER_CALL} overrides (got ${req.overrides.length})`);
      }
      const exp = await store.getExperiment(key);
      const ids = new Map(exp.variants.map((v) => [v.key, v.id]));
      const seen = new Set<string>();
      const units: string[] = [];
      const variantIds: number[] = [];
      req.overrides.forEach((o, i) => {
        checkUnitId(`overrides[${i}].unit_id`, o.unitId);
        if (seen.has(o.unitId)) throw invalidArgument(`overrides[${i}].unit_id`, "must not repeat a unit of the same call");
        seen.add(o.unitId);
        const id = ids.get(o.variantKey);
        if (id === undefined)
          throw invalidArgument(`overrides[${i}].variant_key`, `must name one of the variants (${[...ids.keys()].join(", ")})`);
        units.push(o.unitId);
        variantIds.push(id);
      });
      const after = await store.setOverrides(key, units, variantIds);
      return refreshed({ count: units.length, experimentVersion: after.version });
    },

    async clearOverrides(req) {
      const key = checkKey("experiment_key", req.experimentKey);
      if (req.all === req.unitIds.length > 0) {
        throw invalidArgument("unit_ids", `name 1 to ${MAX_OVERRIDES_PER_CALL} units, or set all (not both)`);
      }
      if (req.unitIds.length > MAX_OVERRIDES_PER_CALL) throw invalidArgument("unit_ids", `must hold at most ${MAX_OVERRIDES_PER_CALL} ids`);
      req.unitIds.forEach((u, i) => checkUnitId(`unit_ids[${i}]`, u));
      const r = await store.clearOverrides(key, req.all ? undefined : req.unitIds);
      return refreshed({ count: r.cleared.length, experimentVersion: r.experiment.version });
    },

    importAssignments: (requests, ctx) => transfers.importAssignments(requests, ctx),
    exportAssignments: (req, ctx) => transfers.exportAssignments(req, ctx),
    copyAssignments: (req, ctx) => transfers.copyAssignments(req, ctx),

    async getExperimentStats(req) {
      const exp = await store.getExperiment(checkKey("key", req.key));
      const counts = await store.countAssignments(exp.id);
      const per = (id: number, source: Source) =>
        counts.filter((c) => c.variantId === id && c.source === source).reduce((a, c) => a + c.units, 0);
      const hashed = exp.variants.map((v) => per(v.id, Source.HASH));
      const total = hashed.reduce((a, b) => a + b, 0);
      const srm = sampleRatio(
        hashed,
        exp.variants.map((v) => v.weight),
      );
      return {
        experimentKey: exp.key,
        experimentVersion: exp.version,
        variants: exp.variants.map((v, i) => ({
          variantKey: v.key,
          units: BigInt(hashed[i]),
          expectedShare: v.weight / 10_000,
          observedShare: total === 0 ? 0 : hashed[i] / total,
          overrides: BigInt(per(v.id, Source.OVERRIDE)),
          imported: BigInt(per(v.id, Source.IMPORT)),
        })),
        totalUnits: BigInt(total),
        chiSquare: srm.chiSquare,
        degreesOfFreedom: srm.degreesOfFreedom,
        pValue: srm.pValue,
        sampleRatioMismatch: srm.mismatch,
      };
    },
  };
}
