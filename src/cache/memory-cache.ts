import type { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { StoredAssignment } from "../engine/evaluate.js";

/** An address in the in-process cache: `key` names the (experiment, unit) pair (see cellId). */
export interface MemoryCell {
  key: string;
  generation: number;
}

// An entry is one number, (generation * 65536 + variant id) * 8 + source: no object per entry,
// so a million entries cost about 70 MB (key string and map slot) instead of three times that.
const VARIANTS = 65_536;
const SOURCES = 8;
const encode = (generation: number, v: StoredAssignment) => (generation * VARIANTS + v.variantId) * SOURCES + v.source;

// The values handed out are shared: there are only as many as variants times sources.
const values = new Map<number, StoredAssignment>();
function valueOf(variantId: number, source: Source): StoredAssignment {
  const k = variantId * SOURCES + source;
  let v = values.get(k);
  if (!v) values.set(k, (v = Object.freeze({ variantId, source })));
  return v;
}

/**
 * In-process layer in front of Redis, bounded by `maxEntries`. Two generations of maps: entries
 * go into the young one; when it holds half the bound it becomes the old one and the previous old
 * one is dropped whole. A hit in the old map is moved to the young one, so what is used stays.
 * Every operation is O(1) (evicting single entries from a Map one by one degrades badly in V8).
 * An entry of another cache generation than the caller's is a miss.
 */
export class MemoryCache {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly half: number;

  constructor(maxEntries: number) {
    this.half = Math.max(0, Math.floor(maxEntries / 2));
  }

  get(key: string, generation: number): StoredAssignment | undefined {
    if (this.half === 0) return undefined;
    let e = this.young.get(key);
    if (e === undefined) {
      e = this.old.get(key);
      if (e === undefined) return undefined;
      this.put(key, e);
    }
    const source = e % SOURCES;
    const rest = (e - source) / SOURCES;
    const variantId = rest % VARIANTS;
    if ((rest - variantId) / VARIANTS !== generation) return undefined;
    return valueOf(variantId, source);
  }

  setMany(cells: readonly MemoryCell[], stored: readonly StoredAssignment[]): void {
    if (this.half === 0) return;
    for (let i = 0; i < cells.length; i++) this.put(cells[i].key, encode(cells[i].generation, stored[i]));
  }

  private put(key: string, e: number): void {
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
