import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { CURRENT_HASH_VERSION } from "../engine/hash.js";
import { checkKey, checkNewIdentity, checkSegments, DEFAULT_SEGMENTS } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import { checkParams } from "../engine/experiment-fields.js";
import { checkNamespaceVersion, type NamespaceStore } from "../store/namespace-store.js";
import { experimentMessage, namespaceMessage } from "./experiment-messages.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<
  ServiceHandlers<typeof ExperimentService>,
  | "createNamespace"
  | "getNamespace"
  | "listNamespaces"
  | "updateNamespace"
  | "archiveNamespace"
  | "unarchiveNamespace"
  | "allocateSegments"
  | "releaseSegments"
>;

/** ExperimentService's calls on namespaces and their segments. `served` resolves once this
 * server serves a change. */
export function namespaceHandlers(store: NamespaceStore, served: <T>(value: T) => Promise<T>): Handlers {
  return {
    async createNamespace(req, ctx) {
      const { key, salt, unitType } = checkNewIdentity(req);
      const segments = checkSegments("segments", req.segments ?? DEFAULT_SEGMENTS);
      const defaultParams = checkParams("default_params", req.defaultParams);
      const record = await store.createNamespace(
        { key, salt, unitType, segments, hashVersion: CURRENT_HASH_VERSION, defaultParams },
        actorOf(ctx),
      );
      return served({ namespace: namespaceMessage(record) });
    },

    async getNamespace(req) {
      return { namespace: namespaceMessage(await store.getNamespace(checkKey("key", req.key), "key")) };
    },

    async updateNamespace(req, ctx) {
      const key = checkKey("key", req.key);
      if (req.defaultParams === undefined) {
        // Nothing to change; a version named is still checked, as it would be with a change.
        const ns = await store.getNamespace(key, "key");
        checkNamespaceVersion(ns, req.version);
        return { namespace: namespaceMessage(ns) };
      }
      const defaultParams = checkParams("default_params", req.defaultParams);
      return served({ namespace: namespaceMessage(await store.updateNamespace(key, defaultParams, actorOf(ctx), req.version)) });
    },

    async listNamespaces(req) {
      return { namespaces: (await store.listNamespaces(req.includeArchived)).map(namespaceMessage) };
    },

    async archiveNamespace(req, ctx) {
      return served({ namespace: namespaceMessage(await store.archiveNamespace(checkKey("key", req.key), actorOf(ctx))) });
    },

    async unarchiveNamespace(req, ctx) {
      return served({ namespace: namespaceMessage(await store.unarchiveNamespace(checkKey("key", req.key), actorOf(ctx))) });
    },

    async allocateSegments(req, ctx) {
      checkKey("namespace_key", req.namespaceKey);
      checkKey("experiment_key", req.experimentKey);
      if (req.segments < 1) throw invalidArgument("segments", "must be at least 1");
      const r = await store.allocateSegments(req.namespaceKey, req.experimentKey, req.segments, actorOf(ctx));
      return served({ namespace: namespaceMessage(r.namespace), experiment: experimentMessage(r.experiment) });
    },

    async releaseSegments(req, ctx) {
      checkKey("namespace_key", req.namespaceKey);
      checkKey("experiment_key", req.experimentKey);
      const r = await store.releaseSegments(req.namespaceKey, req.experimentKey, actorOf(ctx));
      return served({ namespace: namespaceMessage(r.namespace), experiment: experimentMessage(r.experiment), released: r.released });
    },
  };
}
