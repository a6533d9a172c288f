/** The layers a stored assignment is looked up in, fastest first. */
export type LookupLayer = "memory" | "redis" | "replica" | "postgres";

/**
 * What the Assigner reports, once per batch and layer (never once per unit): of the cells that
 * needed a stored assignment and reached `layer`, how many it answered (`hits`) and how many it
 * passed on (`misses`). "replica" (a read replica) is counted only when there are replicas; a
 * miss there goes on to "postgres" (the primary). For "postgres" a miss is a cell with nothing stored (a new assignment, or
 * none). Implementations must be cheap: they run on the hot path.
 */
export interface AssignerMetrics {
  lookups(layer: LookupLayer, hits: number, misses: number): void;
}

export const NO_ASSIGNER_METRICS: AssignerMetrics = { lookups() {} };
