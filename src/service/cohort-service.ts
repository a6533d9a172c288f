import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { CohortSchema, CohortService } from "../../gen/ts/assignment/v1/cohort_service_pb.js";
import { checkUnitAttributes, NO_ATTRIBUTES } from "../engine/attributes.js";
import { checkKey, checkUnitType, isValidUnitId, isValidVariantKey, UNIT_ID_RULE, VARIANT_KEY_RULE } from "../engine/rules.js";
import { alreadyExists, cancelled, deadlineExceeded, invalidArgument, notFound } from "../errors.js";
import { MAX_BULK_UNITS } from "assignment-client/limits";
import { type CohortRecord, CohortExistsError, type CohortStore } from "../store/cohort-store.js";
import { withIdleDeadline } from "../util/idle-deadline.js";
import { actorOf } from "./audit-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";

/** Ids per ExportCohort message when the request names no batch size. */
export const DEFAULT_COHORT_EXPORT_BATCH = 1_000;

export function cohortMessage(c: CohortRecord): MessageInitShape<typeof CohortSchema> {
  return {
    name: c.name,
    unitType: c.unitType,
    size: BigInt(c.size),
    createTime: timestampFromDate(c.createdAt),
    createdBy: c.createdBy,
    hasVariants: c.variants !== null,
    hasAttributes: c.hasAttributes,
    variantKeys: c.variants ?? [],
  };
}

export interface CohortServiceOptions {
  /** How long an upload waits for its client's next message before it is abandoned. */
  uploadIdleMs: number;
}

/**
 * CohortService. An upload holds no connection between messages (ids are staged by one COPY per
 * message) and becomes the cohort in one transaction at its end; an export reads one page per
 * statement and holds no connection while its reader is slow.
 */
export function cohortHandlers(store: CohortStore, options: CohortServiceOptions): ServiceHandlers<typeof CohortService> {
  const byName = async (field: string, name: string): Promise<CohortRecord> => {
    checkKey(field, name);
    const c = await store.get(name);
    if (!c) throw notFound(`${field}: no cohort "${name}"`);
    return c;
  };
  return {
    async uploadCohort(requests, ctx) {
      const upload = await store.beginUpload();
      try {
        let setup: { name: string; unitType: string; replace: boolean; withVariants: boolean } | undefined;
        let received = 0;
        let position = 0;
        const idleSeconds = options.uploadIdleMs / 1000;
        const messages = withIdleDeadline(requests, options.uploadIdleMs, () =>
          deadlineExceeded(
            `no message from the client for ${idleSeconds} s after ${received} ids: the upload was abandoned and nothing was stored`,
          ),
        );
        for await (const m of messages) {
          if (ctx.signal.aborted) throw cancelled("the client cancelled the upload; nothing was stored");
          if (m.setup) {
            if (position > 0) throw invalidArgument(`messages[${position}].setup`, "is allowed only in the first message");
            setup = {
              name: checkKey("setup.name", m.setup.name),
              unitType: checkUnitType("setup.unit_type", m.setup.unitType),
              replace: m.setup.replace,
              withVariants: m.setup.withVariants,
            };
            if (!setup.replace && (await store.get(setup.name))) {
              throw alreadyExists(`setup.name: a cohort "${setup.name}" exists (set setup.replace to replace it)`);
            }
          } else if (!setup) {
            throw invalidArgument("setup", "must be set in the first message of the upload");
          }
          const ids = m.unitIds;
          if (ids.length > MAX_BULK_UNITS) {
            throw invalidArgument(
              `messages[${position}].unit_ids`,
              `must hold at most ${MAX_BULK_UNITS} ids per message (got ${ids.length})`,
            );
          }
          for (let i = 0; i < ids.length; i++) {
            if (!isValidUnitId(ids[i]!)) throw invalidArgument(`unit_ids[${received + i}]`, `${UNIT_ID_RULE}; nothing was stored`);
          }
          const variants = m.variantKeys;
          if (setup.withVariants) {
            if (variants.length !== ids.length) {
              throw invalidArgument(
                `messages[${position}].variant_keys`,
                `must hold one variant key per unit id (${ids.length}), got ${variants.length}; nothing was stored`,
              );
            }
            for (let i = 0; i < variants.length; i++) {
              if (!isValidVariantKey(variants[i]!)) {
                throw invalidArgument(`variant_keys[${received + i}]`, `${VARIANT_KEY_RULE}; nothing was stored`);
              }
            }
          } else if (variants.length > 0) {
            throw invalidArgument(`messages[${position}].variant_keys`, "must be empty unless setup.with_variants is set");
          }
          // Per-unit attributes: checked as StreamAssign checks them, stored as their JSON.
          let attributes: (string | null)[] | undefined;
          if (m.unitAttributes.length > 0) {
            checkUnitAttributes(`messages[${position}].unit_attributes`, m.unitAttributes, ids.length, NO_ATTRIBUTES);
            attributes = m.unitAttributes.map((a) => (Object.keys(a).length === 0 ? null : JSON.stringify(a)));
          }
          await upload.write(ids, setup.withVariants ? variants : undefined, attributes);
          received += ids.length;
          position++;
        }
        if (!setup) throw invalidArgument("setup", "must be set in the first message of the upload");
        if (ctx.signal.aborted) throw cancelled("the client cancelled the upload; nothing was stored");
        const { cohort } = await upload.commit({ ...setup, createdBy: ctx.caller.name, actor: actorOf(ctx) }).catch((err: unknown) => {
          if (err instanceof CohortExistsError)
            throw alreadyExists(`setup.name: a cohort "${setup!.name}" exists (set setup.replace to replace it)`);
          throw err;
        });
        return { cohort: cohortMessage(cohort), received: BigInt(received), duplicates: BigInt(received - cohort.size) };
      } catch (err) {
        await upload.abort();
        throw err;
      }
    },

    async getCohort(req) {
      return { cohort: cohortMessage(await byName("name", req.name)) };
    },

    async listCohorts() {
      return { cohorts: (await store.list()).map(cohortMessage) };
    },

    async deleteCohort(req, ctx) {
      checkKey("name", req.name);
      if (!(await store.delete(req.name, actorOf(ctx)))) throw notFound(`name: no cohort "${req.name}"`);
      return {};
    },

    async *exportCohort(req, ctx) {
      const c = await byName("name", req.name);
      const size = req.batchSize === 0 ? DEFAULT_COHORT_EXPORT_BATCH : req.batchSize;
      if (size > MAX_BULK_UNITS) throw invalidArgument("batch_size", `must be 1..${MAX_BULK_UNITS}`);
      for await (const unitIds of store.export(c.id, size)) {
        if (ctx.signal.aborted) return;
        yield { unitIds };
      }
    },
  };
}
