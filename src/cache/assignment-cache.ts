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

/**
 * Whether cached stored values (the in-process cache and Redis) may be answered. Caches are keyed
 * by an experiment's cache generation, which every change of stored values moves on; but a server
 * learns of a new generation only when it reloads its configuration. Between learning that stored
 * values changed and having reloaded, and whenever it cannot be sure it would have learnt of a
 * change, it must not answer cached values: it reads the store instead.
 */
export interface CacheTrust {
  /** Whether cached stored values of this experiment (this configuration of it: an older one, of
   * another cache generation, never is) may be answered now. */
  trusts(experiment: { readonly id: number; readonly key: string; readonly cacheGeneration: number }): boolean;
  /** A mark of the current trust, for `revokedSince`. */
  mark(): number;
  /** Whether trust was withdrawn from anything since `mark` was taken (a change was learnt of, or
   * the registry lost touch with the store): answers taken from caches meanwhile must be checked
   * against `trusts` again before they are sent. */
  revokedSince(mark: number): boolean;
}

/** Trusts every cache always: for a single process whose every change goes through it. */
export const ALWAYS_TRUSTED: CacheTrust = { trusts: () => true, mark: () => 0, revokedSince: () => false };
