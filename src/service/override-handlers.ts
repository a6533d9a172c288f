import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkKey, checkUnitId } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import { MAX_OVERRIDES_PER_CALL } from "assignment-client/limits";
import type { ExperimentStore } from "../store/experiment-store.js";
import type { OverrideStore } from "../store/override-store.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<ServiceHandlers<typeof ExperimentService>, "setOverrides" | "clearOverrides">;

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
  };
}
