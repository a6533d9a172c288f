import type { ExperimentService } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import type { Queryable } from "../store/database.js";
import type { ErasureStore } from "../store/erasure-store.js";
import type { ExperimentStore } from "../store/experiment-store.js";
import type { HoldoutStore } from "../store/holdout-store.js";
import type { NamespaceStore } from "../store/namespace-store.js";
import type { OverrideStore } from "../store/override-store.js";
import type { AssignmentTransfers } from "./assignment-transfers.js";
import type { ConfigView } from "./config-registry.js";
import { auditHandlers } from "./audit-handlers.js";
import type { EventLog } from "../store/event-log.js";
import { erasureHandlers } from "./erasure-handlers.js";
import { eventHandlers } from "./event-handlers.js";
import type { EventSequencer } from "./event-sequencer.js";
import { experimentHandlers } from "./experiment-handlers.js";
import type { ServiceHandlers } from "./handler-types.js";
import { holdoutHandlers } from "./holdout-handlers.js";
import { namespaceHandlers } from "./namespace-handlers.js";
import { overrideHandlers } from "./override-handlers.js";

export interface ExperimentServiceParts {
  experiments: ExperimentStore;
  namespaces: NamespaceStore;
  holdouts: HoldoutStore;
  overrides: OverrideStore;
  erasures: ErasureStore;
  transfers: AssignmentTransfers;
  registry: ConfigView;
  /** Where the audit log is read (ListChanges). */
  database: Queryable;
  events: EventLog;
  sequencer: EventSequencer;
}

/**
 * ExperimentService: experiments (experiment-handlers.ts), namespaces (namespace-handlers.ts),
 * holdouts (holdout-handlers.ts),
 * overrides (override-handlers.ts), erasures (erasure-handlers.ts), and bulk transfers of stored assignments
 * (assignment-transfers.ts). A call that changes the configuration returns only once this server
 * serves the change.
 */
export function experimentServiceHandlers(parts: ExperimentServiceParts): ServiceHandlers<typeof ExperimentService> {
  const served = async <T>(value: T): Promise<T> => {
    await parts.registry.refresh();
    return value;
  };
  const { transfers } = parts;
  return {
    ...experimentHandlers(parts.experiments, served),
    ...namespaceHandlers(parts.namespaces, served),
    ...holdoutHandlers(parts.holdouts, parts.registry, served),
    ...overrideHandlers(parts.experiments, parts.overrides, served),
    ...erasureHandlers(parts.erasures, served),
    importAssignments: (requests, ctx) => transfers.importAssignments(requests, ctx),
    exportAssignments: (req, ctx) => transfers.exportAssignments(req, ctx),
    copyAssignments: (req, ctx) => transfers.copyAssignments(req, ctx),
    ...auditHandlers(parts.database),
    ...eventHandlers(parts.events, parts.experiments, parts.sequencer),
  };
}
