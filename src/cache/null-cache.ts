import type { StoredAssignment } from "../engine/evaluate.js";
import type { AssignmentCache, CacheCell } from "./assignment-cache.js";

/**
 * The second cache layer when there is no Redis (the embedded, single-process setup): every
 * lookup misses and nothing is kept, so the in-process MemoryCache in front of it is the only
 * cache, and PostgreSQL (or PGlite) answers what it misses. Nothing is shared between processes,
 * which is right for one process and wrong for several: give them a REDIS_URL.
 */
export class NullCache implements AssignmentCache {
  async getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]> {
    return new Array<StoredAssignment | undefined>(cells.length);
  }

  async setMany(): Promise<void> {}

  async close(): Promise<void> {}
}
