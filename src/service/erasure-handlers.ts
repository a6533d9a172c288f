import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkUnitId, checkUnitType } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import { MAX_ERASE_UNITS } from "assignment-client/limits";
import type { ErasureStore } from "../store/erasure-store.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<ServiceHandlers<typeof ExperimentService>, "eraseUnits">;

/** ExperimentService's EraseUnits. `served` resolves once this server serves the change (so that
 * it never answers an erased value once the call has returned). */
export function erasureHandlers(store: ErasureStore, served: <T>(value: T) => Promise<T>): Handlers {
  return {
    async eraseUnits(req, ctx) {
      const unitType = checkUnitType("unit_type", req.unitType);
      if (req.unitIds.length < 1 || req.unitIds.length > MAX_ERASE_UNITS) {
        throw invalidArgument("unit_ids", `must hold 1 to ${MAX_ERASE_UNITS} unit ids (got ${req.unitIds.length})`);
      }
      req.unitIds.forEach((u, i) => checkUnitId(`unit_ids[${i}]`, u));
      const r = await store.eraseUnits(unitType, [...new Set(req.unitIds)], actorOf(ctx));
      return served({ assignments: BigInt(r.assignments), overrides: BigInt(r.overrides), experiments: r.experiments });
    },
  };
}
