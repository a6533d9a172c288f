import type { StoredAssignment } from "../engine/evaluate.js";

/** An address in the in-process cache: `key` names the (experiment, unit) pair (see cellId). */
export interface MemoryCell {
  key: string;
  generation: number;
}

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
export class MemoryCache {
  private young = new Map<string, Entry>();
  private old = new Map<string, Entry>();
  private readonly half: number;

  constructor(maxEntries: number) {
    this.half = Math.max(0, Math.floor(maxEntries / 2));
  }

  get(key: string, generation: number): StoredAssignment | undefined {
    if (this.half === 0) return undefined;
    let e = this.young.get(key);
    if (!e) {
      e = this.old.get(key);
      if (e && e.generation === generation) this.put(key, e);
    }
    return e && e.generation === generation ? e.value : undefined;
  }

  setMany(cells: readonly MemoryCell[], values: readonly StoredAssignment[]): void {
    if (this.half === 0) return;
    for (let i = 0; i < cells.length; i++) this.put(cells[i].key, { generation: cells[i].generation, value: values[i] });
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
