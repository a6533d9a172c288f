import { fromJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkKey } from "../engine/rules.js";
import { invalidArgument } from "../errors.js";
import { type Actor, type ChangeFilter, listChanges, type ObjectKind, parsePageToken } from "../store/audit-log.js";
import type { Queryable } from "../store/database.js";
import type { CallContext, ServiceHandlers } from "./handler-types.js";

/** Changes per ListChanges page: the default and the most. */
export const DEFAULT_CHANGES_PAGE = 100;
export const MAX_CHANGES_PAGE = 1000;
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const OBJECT_KINDS: readonly ObjectKind[] = ["experiment", "namespace", "holdout", "cohort", "job", "schedule"];

/** Who makes a change through this call, as the audit log records it (store/audit-log.ts). */
export function actorOf(ctx: CallContext): Actor {
  return { tokenName: ctx.caller.name, tokenRole: ctx.caller.role, rpc: ctx.method };
}

type Handlers = Pick<ServiceHandlers<typeof ExperimentService>, "listChanges">;

/** ExperimentService's reads of the audit log. */
export function auditHandlers(db: Queryable): Handlers {
  return {
    async listChanges(req) {
      const filter: ChangeFilter = { limit: DEFAULT_CHANGES_PAGE };
      if (req.objectKind !== "") {
        if (!OBJECT_KINDS.includes(req.objectKind as ObjectKind)) {
          throw invalidArgument("object_kind", `must be ${OBJECT_KINDS.join(", ")} (or empty for every kind)`);
        }
        filter.objectKind = req.objectKind as ObjectKind;
      }
      if (req.objectKey !== "") filter.objectKey = checkKey("object_key", req.objectKey);
      if (req.tokenName !== "") {
        // Every token's name (the token file's rule; ADMIN_TOKEN, ASSIGN_TOKEN, anonymous) matches it.
        if (!TOKEN_NAME.test(req.tokenName))
          throw invalidArgument("token_name", "must be a token's name: [A-Za-z0-9][A-Za-z0-9._@-]{0,63}");
        filter.tokenName = req.tokenName;
      }
      if (req.since) filter.since = checkTime("since", req.since);
      if (req.until) filter.until = checkTime("until", req.until);
      if (filter.since && filter.until && filter.since >= filter.until) throw invalidArgument("until", "must be later than since");
      if (req.pageSize > MAX_CHANGES_PAGE)
        throw invalidArgument("page_size", `must be 1..${MAX_CHANGES_PAGE} (or 0 for ${DEFAULT_CHANGES_PAGE})`);
      if (req.pageSize > 0) filter.limit = req.pageSize;
      filter.beforeId = parsePageToken(req.pageToken);
      // One more than the page: whether there is a next one.
      const rows = await listChanges(db, { ...filter, limit: filter.limit + 1 });
      const page = rows.slice(0, filter.limit);
      return {
        changes: page.map((c) => ({
          id: c.id,
          time: timestampFromDate(c.at),
          tokenName: c.tokenName,
          tokenRole: c.tokenRole,
          rpc: c.rpc,
          objectKind: c.objectKind,
          objectKey: c.objectKey,
          versionBefore: c.versionBefore ?? undefined,
          versionAfter: c.versionAfter ?? undefined,
          fields: Object.entries(c.fields).map(([field, v]) => ({
            field,
            before: fromJson(ValueSchema, v.before),
            after: fromJson(ValueSchema, v.after),
          })),
        })),
        nextPageToken: rows.length > filter.limit ? page[page.length - 1]!.id.toString() : "",
      };
    },
  };
}

/** A time filter as a Date: years 1 to 9999 (what a Timestamp may hold). */
function checkTime(field: string, t: Timestamp): Date {
  const d = timestampDate(t);
  const year = d.getUTCFullYear();
  if (Number.isNaN(d.getTime()) || year < 1 || year > 9999 || t.nanos < 0 || t.nanos > 999_999_999) {
    throw invalidArgument(field, "must be a time between years 1 and 9999");
  }
  return d;
}
