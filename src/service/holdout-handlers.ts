import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkTags } from "../engine/experiment-fields.js";
import { holdoutCovers } from "../engine/experiment-config.js";
import { CURRENT_HASH_VERSION } from "../engine/hash.js";
import { checkBasisPoints, checkKey, checkNewIdentity } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import type { HoldoutRecord, HoldoutStore } from "../store/holdout-store.js";
import { actorOf } from "./audit-handlers.js";
import type { ConfigView } from "./config-registry.js";
import { holdoutMessage } from "./experiment-messages.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<
  ServiceHandlers<typeof ExperimentService>,
  "createHoldout" | "getHoldout" | "listHoldouts" | "updateHoldout" | "getHoldoutStats"
>;

/**
 * ExperimentService's calls on holdouts (SPEC.md "Holdouts"). Rule 7 itself is the engine's: the
 * configuration registry gives every experiment the holdouts covering it, so a change here is
 * served (here at once, elsewhere on the configuration NOTIFY) like any configuration change.
 */
export function holdoutHandlers(store: HoldoutStore, registry: ConfigView, served: <T>(value: T) => Promise<T>): Handlers {
  /** The served experiments the holdout covers now, sorted by key. */
  const covered = (h: HoldoutRecord) => registry.all().filter((e) => holdoutCovers(h, e));
  const message = (h: HoldoutRecord) =>
    holdoutMessage(
      h,
      covered(h).map((e) => e.key),
    );
  return {
    async createHoldout(req, ctx) {
      const { key, salt, unitType } = checkNewIdentity(req);
      const share = checkBasisPoints("share", req.share);
      const tags = checkTags("tags", req.tags);
      const record = await store.createHoldout({ key, salt, unitType, share, tags, hashVersion: CURRENT_HASH_VERSION }, actorOf(ctx));
      // The message names the experiments covered, so it is made once this server serves the holdout.
      await served(undefined);
      return { holdout: message(record) };
    },

    async getHoldout(req) {
      return { holdout: message(await store.getHoldout(checkKey("key", req.key))) };
    },

    async listHoldouts() {
      return { holdouts: (await store.listHoldouts()).map(message) };
    },

    async updateHoldout(req, ctx) {
      const key = checkKey("key", req.key);
      const share = req.share === undefined ? undefined : checkBasisPoints("share", req.share);
      const tags = req.tags === undefined ? undefined : checkTags("tags.tags", req.tags.tags);
      const current = await store.getHoldout(key);
      if (req.salt !== undefined && req.salt !== current.salt) {
        throw invalidArgument("salt", "never changes after creation (a new salt would re-split every unit): create another holdout");
      }
      if (req.unitType !== "" && req.unitType !== current.unitType) {
        throw invalidArgument("unit_type", "never changes after creation: create another holdout");
      }
      const record = await store.updateHoldout(key, { share, tags }, actorOf(ctx), req.version);
      await served(undefined);
      return { holdout: message(record) };
    },

    async getHoldoutStats(req) {
      const h = await store.getHoldout(checkKey("key", req.key));
      const experiments = covered(h);
      const counts = new Map(
        (
          await store.counts(
            h.id,
            experiments.map((e) => e.id),
          )
        ).map((c) => [c.experimentId, c]),
      );
      return {
        holdoutKey: h.key,
        share: h.share,
        experiments: experiments.map((e) => ({
          experimentKey: e.key,
          heldOut: BigInt(counts.get(e.id)?.heldOut ?? 0),
          exposed: BigInt(counts.get(e.id)?.exposed ?? 0),
        })),
      };
    },
  };
}
