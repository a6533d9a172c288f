import type { StoredAssignment } from "../engine/evaluate.js";
import type { AssignmentCache, CacheCell } from "./assignment-cache.js";

interface Generation {
  generation: number;
  units: Map<string, StoredAssignment>;
}

/**
 * In-process layer in front of Redis. One map per experiment, dropped whole when the experiment's
 * cache generation moves on; bounded by `maxEntries` (oldest entries of the experiment being
 * written are evicted first).
 */
export class MemoryCache implements AssignmentCache {
  private readonly experiments = new Map<number, Generation>();
  private size = 0;

  constructor(private readonly maxEntries: number) {}

  private slot(experimentId: number, generation: number, create: boolean): Generation | undefined {
    let g = this.experiments.get(experimentId);
    if (g && g.generation !== generation) {
      if (generation < g.generation) return undefined; // a caller with older configuration
      this.size -= g.units.size;
      this.experiments.delete(experimentId);
      g = undefined;
    }
    if (!g && create) this.experiments.set(experimentId, (g = { generation, units: new Map() }));
    return g;
  }

  getSync(cell: CacheCell): StoredAssignment | undefined {
    return this.slot(cell.experimentId, cell.generation, false)?.units.get(cell.unitId);
  }

  async getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]> {
    return cells.map((c) => this.getSync(c));
  }

  async setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): Promise<void> {
    if (this.maxEntries <= 0) return;
    for (let i = 0; i < cells.length; i++) {
      const c = cells[i];
      const g = this.slot(c.experimentId, c.generation, true);
      if (!g) continue;
      if (!g.units.has(c.unitId)) {
        if (this.size >= this.maxEntries) this.evictOne(g);
        this.size++;
      }
      g.units.set(c.unitId, values[i]);
    }
  }

  private evictOne(preferred: Generation): void {
    const victim = preferred.units.size > 0 ? preferred : this.experiments.values().next().value;
    const oldest = victim?.units.keys().next();
    if (victim && oldest && !oldest.done) {
      victim.units.delete(oldest.value);
      this.size--;
    }
  }

  get entries(): number {
    return this.size;
  }

  clear(): void {
    this.experiments.clear();
    this.size = 0;
  }
}
