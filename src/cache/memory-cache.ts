import { storedValue, type StoredAssignment } from "../engine/evaluate.js";
import type { CacheCell, InProcessCache } from "./assignment-cache.js";

// An entry is one number, (generation * 65536 + variant id) * 8 + source (never 0: sources start
// at 1), stored under a 64-bit fingerprint of (experiment, unit) in typed arrays: no object, no
// string and no Map slot per entry, so a million entries cost 32 MB outside the JavaScript heap
// and the garbage collector never walks them.
const VARIANTS = 65_536;
const SOURCES = 8;
const encode = (generation: number, v: StoredAssignment) => (generation * VARIANTS + v.variantId) * SOURCES + v.source;

/**
 * Two independent 32-bit hashes (cyrb53's lanes, kept whole) of the experiment id and the unit id's
 * UTF-16 code units. With 64 bits, the chance that two of a million cached units share a
 * fingerprint is about 3 in 100 million, and that an uncached unit matches one, 5 in 10^14.
 */
let fpHigh = 0;
let fpLow = 0;
function fingerprint(experimentId: number, unitId: string): void {
  let h1 = 0xdeadbeef ^ experimentId;
  let h2 = 0x41c6ce57 ^ Math.imul(experimentId, 0x9e3779b1);
  for (let i = 0; i < unitId.length; i++) {
    const ch = unitId.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  fpHigh = h1 >>> 0;
  fpLow = (h2 ^ unitId.length) >>> 0;
}

const TWO_32 = 4_294_967_296;

/**
 * Open addressing with linear probing over one typed array, never more than half full. A slot is
 * four 32-bit words side by side: fingerprint high and low, value low and high (value 0: empty).
 * One slot is one cache line, so a probe costs one memory access, not one per array.
 */
class Table {
  readonly words: Uint32Array;
  readonly mask: number;
  size = 0;

  constructor(readonly limit: number) {
    let capacity = 16;
    while (capacity < limit * 2) capacity *= 2;
    this.words = new Uint32Array(capacity * 4);
    this.mask = capacity - 1;
  }

  /** The first word of the current fingerprint's slot, or of the empty slot where it would go. */
  slot(): number {
    const w = this.words;
    let i = (fpHigh ^ fpLow) & this.mask;
    for (;;) {
      const o = i * 4;
      if ((w[o + 2] === 0 && w[o + 3] === 0) || (w[o] === fpHigh && w[o + 1] === fpLow)) return o;
      i = (i + 1) & this.mask;
    }
  }

  /** The value at slot `o` (0: empty). */
  value(o: number): number {
    return this.words[o + 2]! + this.words[o + 3]! * TWO_32;
  }
}

/**
 * In-process layer in front of Redis, bounded by `maxEntries`. Two generations of tables: entries
 * go into the young one; when it holds half the bound it becomes the old one and the previous old
 * one is dropped whole. A hit in the old table is copied to the young one, so what is used stays.
 * Every operation is O(1). An entry of another cache generation than the caller's is a miss.
 */
export class MemoryCache implements InProcessCache {
  private young: Table | undefined;
  private old: Table | undefined;
  private readonly half: number;

  constructor(maxEntries: number) {
    this.half = Math.max(0, Math.floor(maxEntries / 2));
    if (this.half > 0) this.young = new Table(this.half);
  }

  get(cell: CacheCell): StoredAssignment | undefined {
    return this.lookup(cell.experimentId, cell.generation, cell.unitId);
  }

  lookup(experimentId: number, generation: number, unitId: string): StoredAssignment | undefined {
    if (!this.young) return undefined;
    fingerprint(experimentId, unitId);
    let e = this.young.value(this.young.slot());
    if (e === 0) {
      if (!this.old) return undefined;
      e = this.old.value(this.old.slot());
      if (e === 0) return undefined;
      this.put(e);
    }
    const source = e % SOURCES;
    const rest = (e - source) / SOURCES;
    const variantId = rest % VARIANTS;
    if ((rest - variantId) / VARIANTS !== generation) return undefined;
    return storedValue(variantId, source);
  }

  setMany(cells: readonly CacheCell[], stored: readonly StoredAssignment[]): void {
    if (!this.young) return;
    for (let i = 0; i < cells.length; i++) {
      const c = cells[i]!;
      fingerprint(c.experimentId, c.unitId);
      this.put(encode(c.generation, stored[i]!));
    }
  }

  /** Stores `e` under the current fingerprint. */
  private put(e: number): void {
    const t = this.young!;
    const o = t.slot();
    const w = t.words;
    if (w[o + 2] === 0 && w[o + 3] === 0) {
      w[o] = fpHigh;
      w[o + 1] = fpLow;
      t.size++;
    }
    w[o + 2] = e % TWO_32;
    w[o + 3] = Math.floor(e / TWO_32);
    if (t.size >= t.limit) {
      this.old = t;
      this.young = new Table(this.half);
    }
  }

  get entries(): number {
    return (this.young?.size ?? 0) + (this.old?.size ?? 0);
  }

  clear(): void {
    if (this.half > 0) this.young = new Table(this.half);
    this.old = undefined;
  }
}
