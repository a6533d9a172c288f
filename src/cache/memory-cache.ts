import type { StoredAssignment } from "../engine/evaluate.js";
import type { AssignmentCache, CacheCell } from "./assignment-cache.js";

interface Entry {
  generation: number;
  value: StoredAssignment;
}

/**
 * In-process layer in front of Redis, bounded by `maxEntries`. Two generations of maps: entries
 * go into the young one; when it holds half the bound it becomes the old one and the previous old
 * one is dropped whole. A hit in the old map is moved to the young one, so what is used stays.
 * Every operation is O(1) (evicting single entries from a Map one by one degrades badly in V8).
 * An entry of an older cache generation than the caller's is a miss.
 */
export class MemoryCache implements AssignmentCache {
  private young = new Map<string, Entry>();
  private old = new Map<string, Entry>();
  private readonly half: number;

  constructor(maxEntries: number) {
    this.half = Math.max(0, Math.floor(maxEntries / 2));
  }

  private static key(c: CacheCell): string {
    return c.experimentId + "\u0000" + c.unitId;
  }

  getSync(cell: CacheCell): StoredAssignment | undefined {
    if (this.half === 0) return undefined;
    const key = MemoryCache.key(cell);
    let e = this.young.get(key);
    if (!e) {
      e = this.old.get(key);
      if (e && e.generation === cell.generation) this.put(key, e);
    }
    return e && e.generation === cell.generation ? e.value : undefined;
  }

  async getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]> {
    return cells.map((c) => this.getSync(c));
  }

  async setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): Promise<void> {
    if (this.half === 0) return;
    for (let i = 0; i < cells.length; i++) this.put(MemoryCache.key(cells[i]), { generation: cells[i].generation, value: values[i] });
  }

  private put(key: string, e: Entry): void {
    this.young.set(key, e);
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  get entries(): number {
    return this.young.size + this.old.size;
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }
}
