import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkKey, checkUnitId, isValidUnitId } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import { MAX_OVERRIDES_PER_CALL } from "assignment-client/limits";
import type { ExperimentStore } from "../store/experiment-store.js";
import type { OverrideCursor, OverrideStore } from "../store/override-store.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<ServiceHandlers<typeof ExperimentService>, "setOverrides" | "clearOverrides" | "listOverrides">;

/** ListOverrides: overrides per page when the request says 0, and the most it may ask. */
export const DEFAULT_OVERRIDE_PAGE = 1_000;
export const MAX_OVERRIDE_PAGE = 10_000;

/** A page token: where the next page starts (experiment id, unit id), as base64url JSON. Opaque to
 * callers. */
function encodeCursor(c: OverrideCursor): string {
  return Buffer.from(JSON.stringify([c.experimentId, c.unitId])).toString("base64url");
}

function decodeCursor(token: string): OverrideCursor {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    // What the store can take: an int4 id and a valid unit id (no U+0000, which text cannot hold).
    if (Array.isArray(v) && v.length === 2 && Number.isInteger(v[0]) && v[0] >= 0 && v[0] <= 2 ** 31 - 1 && isValidUnitId(v[1])) {
      return { experimentId: v[0] as number, unitId: v[1] };
    }
  } catch {
    // not JSON: refused below
  }
  throw invalidArgument("page_token", "must be the next_page_token of an earlier ListOverrides answer");
}

/** ExperimentService's calls on overrides. `served` resolves once this server serves a change. */
export function overrideHandlers(experiments: ExperimentStore, store: OverrideStore, served: <T>(value: T) => Promise<T>): Handlers {
  return {
    async setOverrides(req, ctx) {
      const key = checkKey("experiment_key", req.experimentKey);
      if (req.overrides.length < 1 || req.overrides.length > MAX_OVERRIDES_PER_CALL) {
        throw invalidArgument("overrides", `must hold 1 to ${MAX_OVERRIDES_PER_CALL} overrides (got ${req.overrides.length})`);
      }
      const exp = await experiments.getExperiment(key);
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
      const after = await store.setOverrides(key, units, variantIds, actorOf(ctx));
      return served({ count: units.length, experimentVersion: after.version });
    },

    async clearOverrides(req, ctx) {
      const key = checkKey("experiment_key", req.experimentKey);
      if (req.all === req.unitIds.length > 0) {
        throw invalidArgument("unit_ids", `name 1 to ${MAX_OVERRIDES_PER_CALL} units, or set all (not both)`);
      }
      if (req.unitIds.length > MAX_OVERRIDES_PER_CALL) throw invalidArgument("unit_ids", `must hold at most ${MAX_OVERRIDES_PER_CALL} ids`);
      req.unitIds.forEach((u, i) => checkUnitId(`unit_ids[${i}]`, u));
      const r = await store.clearOverrides(key, req.all ? undefined : req.unitIds, actorOf(ctx));
      return served({ count: r.cleared.length, experimentVersion: r.experiment.version });
    },

    async listOverrides(req) {
      const experimentId =
        req.experimentKey === "" ? undefined : (await experiments.getExperiment(checkKey("experiment_key", req.experimentKey))).id;
      if (req.pageSize > MAX_OVERRIDE_PAGE)
        throw invalidArgument("page_size", `must be at most ${MAX_OVERRIDE_PAGE} (0: ${DEFAULT_OVERRIDE_PAGE})`);
      const size = req.pageSize === 0 ? DEFAULT_OVERRIDE_PAGE : req.pageSize;
      const after = req.pageToken === "" ? undefined : decodeCursor(req.pageToken);
      // One row more than the page tells whether another page follows.
      const rows = await store.listOverrides(experimentId, after, size + 1);
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        overrides: page.map((o) => ({
          experimentKey: o.experimentKey,
          unitId: o.unitId,
          variantKey: o.variantKey ?? "",
          experimentVersion: o.version,
          setTime: timestampFromDate(o.setAt),
        })),
        nextPageToken: rows.length > size && last ? encodeCursor(last) : "",
      };
    },
  };
}
