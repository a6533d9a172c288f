import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { checkKey } from "../engine/rules.js";
import { Code, invalidArgument, ServiceError } from "../errors.js";
import type { EventLog } from "../store/event-log.js";
import type { ExperimentStore } from "../store/experiment-store.js";
import type { EventSequencer } from "./event-sequencer.js";
import type { ServiceHandlers } from "./handler-types.js";

type Handlers = Pick<ServiceHandlers<typeof ExperimentService>, "watchAssignments">;

const DEFAULT_BATCH = 1_000;
export const MAX_WATCH_BATCH = 10_000;
const MAX_POSITION = 2n ** 63n - 1n;
/** How long a watcher that is caught up waits before it reads again when no step of this server
 * announced events (steps of another server do not wake it). */
const IDLE_POLL_MS = 250;

/**
 * WatchAssignments: pages of the event log, each read on a pooled connection released before the
 * page is sent. A message is sent only when the previous one was taken by the transport (its write
 * callback), so a slow watcher is held where it is, with one page in memory and no connection.
 */
export function eventHandlers(events: EventLog, experiments: ExperimentStore, sequencer: EventSequencer): Handlers {
  return {
    async *watchAssignments(req, ctx) {
      const max = req.maxBatch === 0 ? DEFAULT_BATCH : req.maxBatch;
      if (max > MAX_WATCH_BATCH) throw invalidArgument("max_batch", `must be at most ${MAX_WATCH_BATCH} (got ${max})`);
      const keys = [...new Set(req.experimentKeys)];
      keys.forEach((k, i) => checkKey(`experiment_keys[${i}]`, k));
      let ids: number[] | undefined;
      let unitTypes: string[] | undefined;
      if (keys.length > 0) {
        const found = await Promise.all(keys.map((k) => experiments.getExperiment(k)));
        ids = found.map((e) => e.id);
        unitTypes = [...new Set(found.map((e) => e.unitType))];
      }
      let after: bigint;
      const start = req.start;
      if (start.case === "fromNow") {
        after = await events.lastPosition();
        yield { events: [], position: after };
      } else if (start.case === "fromOldest") {
        after = (await events.oldestPosition()) - 1n;
      } else {
        after = start.case === "afterPosition" ? start.value : 0n;
        // Positions are PostgreSQL bigints; a uint64 above that can name no event.
        if (after > MAX_POSITION) throw invalidArgument("after_position", `must be at most ${MAX_POSITION} (got ${after})`);
        await checkRetained(events, after);
      }
      while (!ctx.signal.aborted) {
        const page = await events.read(after, max, ids && { experimentIds: ids, unitTypes: unitTypes! });
        if (page.length === 0) {
          if (req.stopWhenCaughtUp) return;
          await sequencer.waitForEvents(IDLE_POLL_MS, ctx.signal);
          continue;
        }
        // Positions are gap-free: a gap before the first event is a page of another experiment or
        // events pruned while this watcher lagged (then it must not go on as if nothing was missed).
        if (page[0]!.position !== after + 1n) await checkRetained(events, after);
        after = page[page.length - 1]!.position;
        yield {
          position: after,
          events: page.map((e) => ({
            position: e.position,
            kind: e.kind,
            experimentKey: e.experimentKey ?? "",
            unitType: e.unitType,
            unitId: e.unitId,
            variantKey: e.variantKey ?? "",
            source: e.source,
            experimentVersion: e.version,
            time: timestampFromDate(e.at),
          })),
        };
      }
    },
  };
}

/** OUT_OF_RANGE unless every event after `after` is still retained. */
async function checkRetained(events: EventLog, after: bigint): Promise<void> {
  const oldest = await events.oldestPosition();
  if (after + 1n < oldest) {
    throw new ServiceError(
      Code.OutOfRange,
      `after_position: events up to ${oldest - 1n} are no longer retained; the oldest available is ${oldest} (resume with after_position ${oldest - 1n}, or from_oldest)`,
    );
  }
}
