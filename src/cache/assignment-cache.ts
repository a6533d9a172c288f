import type { StoredAssignment } from "../engine/evaluate.js";

/**
 * A cache of stored assignments. It only ever holds values already stored in PostgreSQL.
 * Entries are addressed by experiment id, the experiment's cache generation and unit id: when
 * stored values change under the cache (overrides, overwriting imports) the generation moves on
 * and every older entry stops being read.
 */
export interface CacheCell {
  experimentId: number;
  generation: number;
  unitId: string;
}

/** The shared cache layer (Redis; none: NullCache). */
export interface AssignmentCache {
  /** Positional; undefined for a miss. Never throws: an unreachable cache is all misses. */
  getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]>;
  /** Stores values (already stored in PostgreSQL). Never throws. */
  setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): Promise<void>;
  /** Closes its connections, after the writes already sent. */
  close(): Promise<void>;
}

/** The in-process layer in front of it (MemoryCache): synchronous, read cell by cell. */
export interface InProcessCache {
  /** The value of (experiment, unit) cached under `generation`, or undefined. */
  lookup(experimentId: number, generation: number, unitId: string): StoredAssignment | undefined;
  setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): void;
}
