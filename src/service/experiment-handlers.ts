import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { ExperimentStatus, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { checkDescription, checkParams, checkParamsTotal, checkStatus, checkTags, checkVariantNamed } from "../engine/experiment-fields.js";
import { applyExperimentChanges } from "../engine/experiment-update.js";
import { compileCondition } from "../engine/condition.js";
import { CURRENT_HASH_VERSION } from "../engine/hash.js";
import { checkBasisPoints, checkKey, checkNewIdentity, checkVariants, FULL_ROLLOUT, TOTAL_WEIGHT } from "../engine/rules.js";
import { sampleRatio } from "../engine/sample-ratio.js";
import { invalidArgument } from "../errors.js";
import type { ExperimentStore } from "../store/experiment-store.js";
import { experimentMessage } from "./experiment-messages.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";
import { checkUpdateAllowed } from "./roles.js";

type Handlers = Pick<
  ServiceHandlers<typeof ExperimentService>,
  | "createExperiment"
  | "getExperiment"
  | "listExperiments"
  | "updateExperiment"
  | "archiveExperiment"
  | "unarchiveExperiment"
  | "getExperimentStats"
>;

/** ExperimentService's calls on experiments themselves. `served` resolves once this server
 * serves a change (admin calls return only then). */
export function experimentHandlers(store: ExperimentStore, served: <T>(value: T) => Promise<T>): Handlers {
  return {
    async createExperiment(req, ctx) {
      const { key, salt, unitType } = checkNewIdentity(req);
      checkVariants("variants", req.variants);
      const variants = req.variants.map((v, id) => ({
        id,
        key: v.key,
        weight: v.weight,
        params: checkParams(`variants[${id}].params`, v.params),
      }));
      checkParamsTotal("variants[].params", variants);
      const rollout = checkBasisPoints("rollout", req.rollout ?? FULL_ROLLOUT);
      const status = req.status === ExperimentStatus.UNSPECIFIED ? ExperimentStatus.DRAFT : checkStatus("status", req.status);
      if (status === ExperimentStatus.STOPPED) throw invalidArgument("status", "a new experiment must be DRAFT, RUNNING or PAUSED");
      const defaultVariant = req.defaultVariant === "" ? null : checkVariantNamed("default_variant", variants, req.defaultVariant);
      const condition = checkCondition(req.condition);
      const record = await store.createExperiment(
        {
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
          condition,
        },
        actorOf(ctx),
      );
      return served({ experiment: experimentMessage(record) });
    },

    async getExperiment(req) {
      const key = checkKey("key", req.key);
      if (req.version !== undefined) return { experiment: experimentMessage(await store.getExperimentAtVersion(key, req.version)) };
      return { experiment: experimentMessage(await store.getExperiment(key)) };
    },

    async listExperiments(req) {
      if (req.status !== ExperimentStatus.UNSPECIFIED) checkStatus("status", req.status);
      const all = await store.listExperiments(req.includeArchived);
      return {
        experiments: all
          .filter(
            (e) =>
              (req.status === ExperimentStatus.UNSPECIFIED || e.status === req.status) &&
              (req.tag === "" || e.tags.includes(req.tag)) &&
              (req.namespace === "" || e.namespaceKey === req.namespace),
          )
          .map(experimentMessage),
      };
    },

    async updateExperiment(req, ctx) {
      checkUpdateAllowed(ctx.caller, req);
      const key = checkKey("key", req.key);
      if (req.version === 0n) throw invalidArgument("version", "must be the experiment's current version (from GetExperiment)");
      if (req.variants) checkVariants("variants.variants", req.variants.variants);
      if (req.rollout !== undefined) checkBasisPoints("rollout", req.rollout);
      if (req.status !== ExperimentStatus.UNSPECIFIED) checkStatus("status", req.status);
      const tags = req.tags ? checkTags("tags.tags", req.tags.tags) : undefined;
      if (req.description !== undefined) checkDescription("description", req.description);
      const condition = req.condition === undefined ? undefined : checkCondition(req.condition);
      // The rest depends on the current state: checked in the transaction that changes it.
      const record = await store.updateExperiment(
        key,
        req.version,
        (current) =>
          applyExperimentChanges(current, {
            variants: req.variants?.variants,
            rollout: req.rollout,
            status: req.status === ExperimentStatus.UNSPECIFIED ? undefined : req.status,
            winner: req.winner,
            defaultVariant: req.defaultVariant,
            tags,
            description: req.description,
            condition,
          }),
        actorOf(ctx),
      );
      return served({ experiment: experimentMessage(record) });
    },

    async archiveExperiment(req, ctx) {
      const record = await store.archiveExperiment(checkKey("key", req.key), actorOf(ctx));
      return served({ experiment: experimentMessage(record) });
    },

    async unarchiveExperiment(req, ctx) {
      const record = await store.unarchiveExperiment(checkKey("key", req.key), actorOf(ctx));
      return served({ experiment: experimentMessage(record) });
    },

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
          units: BigInt(hashed[i]!),
          expectedShare: v.weight / TOTAL_WEIGHT,
          observedShare: total === 0 ? 0 : hashed[i]! / total,
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

/** A targeting condition as stored: "" (none), or CEL that compiles (INVALID_ARGUMENT naming
 * `condition` and the line and column at fault otherwise). */
function checkCondition(source: string): string {
  if (source === "") return "";
  compileCondition("condition", source);
  return source;
}
