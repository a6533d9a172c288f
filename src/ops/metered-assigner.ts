import type { AssignmentCache, CacheTrust, InProcessCache } from "../cache/assignment-cache.js";
import type { Attributes } from "../engine/attributes.js";
import type { ExperimentConfig } from "../engine/experiment-config.js";
import { Assigner, type AssignOptionsLike, type Cell, type CellResult } from "../service/assigner.js";
import type { AssignmentStorage } from "../store/assignment-store.js";
import type { ServerMetrics } from "./metrics.js";

/** The Assigner, reporting its cache lookups and counting each batch's answers by reason. Used only
 * when metrics are on, so that a server without them pays nothing. */
export class MeteredAssigner extends Assigner {
  constructor(
    store: AssignmentStorage,
    memory: InProcessCache,
    cache: AssignmentCache,
    private readonly serverMetrics: ServerMetrics,
    trust?: CacheTrust,
  ) {
    super(store, memory, cache, serverMetrics.assigner, trust);
  }

  override assignNow(cells: readonly Cell[], options: AssignOptionsLike): CellResult[] | Promise<CellResult[]> {
    const results = super.assignNow(cells, options);
    if (!Array.isArray(results)) return results.then((r) => this.answered(r));
    return this.answered(results);
  }

  override async assignGrid(
    experiments: readonly (ExperimentConfig | undefined)[],
    unitIds: readonly string[],
    unitType: string,
    options: AssignOptionsLike,
    attributes?: Attributes | readonly Attributes[],
  ): Promise<CellResult[]> {
    return this.answered(await super.assignGrid(experiments, unitIds, unitType, options, attributes));
  }

  private answered(results: CellResult[]): CellResult[] {
    this.serverMetrics.answered(results);
    return results;
  }
}
