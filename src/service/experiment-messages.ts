import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ExperimentSchema, HoldoutSchema, NamespaceSchema } from "../../gen/ts/assignment/v1/types_pb.js";
import type { ExperimentRecord, NamespaceRecord } from "../store/config-records.js";
import type { HoldoutRecord } from "../store/holdout-store.js";

/** Stored records as the API's messages. */

export function experimentMessage(r: ExperimentRecord): MessageInitShape<typeof ExperimentSchema> {
  return {
    key: r.key,
    salt: r.salt,
    unitType: r.unitType,
    hashVersion: r.hashVersion,
    variants: r.variants.map((v) => ({ key: v.key, weight: v.weight, params: v.params })),
    rollout: r.rollout,
    status: r.status,
    defaultVariant: r.defaultVariant ?? r.variants[0]!.key,
    winner: r.winner ?? "",
    tags: r.tags,
    description: r.description,
    condition: r.condition,
    namespace: r.namespaceKey ?? "",
    segments: r.segmentCount,
    version: r.version,
    createTime: timestampFromDate(r.createdAt),
    updateTime: timestampFromDate(r.updatedAt),
    archived: r.archivedAt !== null,
    archiveTime: r.archivedAt ? timestampFromDate(r.archivedAt) : undefined,
  };
}

export function namespaceMessage(n: NamespaceRecord): MessageInitShape<typeof NamespaceSchema> {
  const allocated = [...n.allocations.values()].reduce((a, b) => a + b, 0);
  return {
    key: n.key,
    salt: n.salt,
    unitType: n.unitType,
    segments: n.segments,
    freeSegments: n.segments - allocated,
    allocations: [...n.allocations].map(([experimentKey, segments]) => ({ experimentKey, segments })),
    createTime: timestampFromDate(n.createdAt),
    archived: n.archivedAt !== null,
    archiveTime: n.archivedAt ? timestampFromDate(n.archivedAt) : undefined,
    defaultParams: n.defaultParams ?? undefined,
    version: n.version,
  };
}

/** A holdout, with the experiments it covers (`covered`, sorted by key). */
export function holdoutMessage(h: HoldoutRecord, covered: readonly string[]): MessageInitShape<typeof HoldoutSchema> {
  return {
    key: h.key,
    salt: h.salt,
    unitType: h.unitType,
    share: h.share,
    tags: h.tags,
    createTime: timestampFromDate(h.createdAt),
    updateTime: timestampFromDate(h.updatedAt),
    experimentKeys: [...covered],
    version: h.version,
  };
}
