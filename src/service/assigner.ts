import { ExperimentStatus, Layer, Reason, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { ALWAYS_TRUSTED, type AssignmentCache, type CacheCell, type CacheTrust, type InProcessCache } from "../cache/assignment-cache.js";
import { type Attributes, NO_ATTRIBUTES } from "../engine/attributes.js";
import { decide, holdingOut, needsStoreLookup, refuseUnit, type Evaluation, type StoredAssignment } from "../engine/evaluate.js";
import type { ExperimentConfig, VariantConfig } from "../engine/experiment-config.js";
import { Code, hasCode } from "../errors.js";
import { type AssignmentStorage, cellId, type HeldOutUnit, type NewAssignment } from "../store/assignment-store.js";
import { NO_ASSIGNER_METRICS, type AssignerMetrics } from "./assigner-metrics.js";

/** One (experiment, unit) question. `experiment` is undefined when the key is unknown. */
export interface Cell {
  experiment: ExperimentConfig | undefined;
  unitId: string;
  unitType: string;
  /** The unit's attributes, for targeting conditions (rule 8); none when absent. */
  attributes?: Attributes;
}

/** Shared between cells with the same answer: never mutate one. */
export interface CellResult {
  readonly reason: Reason;
  readonly variant: VariantConfig | undefined;
  /** The answer is a stored assignment (now). */
  readonly stored: boolean;
  readonly layer: Layer;
}

export interface AssignOptionsLike {
  dryRun: boolean;
  allowUnstored: boolean;
  /** Go from the in-process cache straight to PostgreSQL. Always correct (PostgreSQL holds every
   * stored assignment, and a NEW cell's INSERT meets any row stored meanwhile); faster where Redis
   * could only miss, as in a stream of new units. What PostgreSQL answers still fills Redis. */
  skipRedisRead?: boolean;
  /** Wait while Redis is more than MAX_PENDING_FILL_CELLS values behind (see fill). For streams:
   * a page load is never made to wait for the cache. */
  paceToRedis?: boolean;
}

/** A distinct (experiment, unit) pair that needs the store, and the request positions asking it.
 * It is its own cache address. */
interface Lookup extends CacheCell {
  experiment: ExperimentConfig;
  /** cellId(experiment, unit): the in-process cache key. */
  key: string;
  first: number;
  more: number[] | undefined;
  /** The caches may answer it (CacheTrust); else only the store. */
  trusted: boolean;
  /** What Redis answered. */
  cached: StoredAssignment | undefined;
  /** The evaluation without a stored assignment, once made (kept so that rule 8's condition is
   * not tested twice for one cell). */
  fresh: Evaluation | undefined;
}

/** What the memory pass answered, and the cells it left for the slower layers. */
interface MemoryPass {
  results: CellResult[];
  lookups: Map<string, Lookup>;
}

/** A batch of cells as positional accessors (no cell object per pair for grids and streams):
 * cell i is experimentAt(i) for unitIdAt(i) of unitTypeAt(i) with attributesAt(i). */
interface Cells {
  count: number;
  experimentAt: (i: number) => ExperimentConfig | undefined;
  unitIdAt: (i: number) => string;
  unitTypeAt: (i: number) => string;
  attributesAt: (i: number) => Attributes;
}

/** Values sent to Redis and not yet acknowledged, beyond which callers wait (see fill). */
export const MAX_PENDING_FILL_CELLS = 40_000;

const STORED_REASONS = new Set([Reason.OVERRIDE, Reason.STICKY]);

/** RUNNING or PAUSED: where a stored assignment (not an override) answers STICKY (rules 4-5). */
const isAssigning = (e: ExperimentConfig) => e.status === ExperimentStatus.RUNNING || e.status === ExperimentStatus.PAUSED;

// Answers are interned per variant: a batch of 10,000 units has a handful of distinct answers,
// and allocating one object per unit was a measurable share of a stream's time.
const interned = new WeakMap<VariantConfig, CellResult[]>();
const internedNoVariant: CellResult[] = [];

function result(reason: Reason, variant: VariantConfig | undefined, stored: boolean, layer: Layer): CellResult {
  let table = variant ? interned.get(variant) : internedNoVariant;
  if (!table) interned.set(variant!, (table = []));
  const code = (reason * 2 + (stored ? 1 : 0)) * 8 + layer;
  return (table[code] ??= { reason, variant, stored, layer });
}

/**
 * Answers a batch of cells following SPEC.md: configuration first (rules 1-4 without I/O when the
 * store cannot matter), then the layers memory → Redis → PostgreSQL for stored assignments, each
 * read once per batch, then one INSERT for every new assignment; what was read from a slower
 * layer is written to the faster ones. The caches answer only for experiments `trust` trusts
 * (see CacheTrust); if trust is withdrawn while a batch runs, its cached answers of experiments no
 * longer trusted are asked again, of the store, before the batch is answered.
 */
export class Assigner {
  private readonly pendingFills = new Set<Promise<void>>();
  private pendingFillCells = 0;

  constructor(
    private readonly store: AssignmentStorage,
    private readonly memory: InProcessCache,
    private readonly redis: AssignmentCache,
    private readonly metrics: AssignerMetrics = NO_ASSIGNER_METRICS,
    private readonly trust: CacheTrust = ALWAYS_TRUSTED,
  ) {}

  async assign(cells: readonly Cell[], options: AssignOptionsLike): Promise<CellResult[]> {
    return this.assignNow(cells, options);
  }

  /**
   * assign(), answered in this turn (an array, not a promise) when every cell is answered by
   * configuration or the in-process cache, as a warm page load is: no promise, no microtask.
   * Otherwise a promise, as from assign().
   */
  assignNow(cells: readonly Cell[], options: AssignOptionsLike): CellResult[] | Promise<CellResult[]> {
    return this.assignEach(
      {
        count: cells.length,
        experimentAt: (i) => cells[i]!.experiment,
        unitIdAt: (i) => cells[i]!.unitId,
        unitTypeAt: (i) => cells[i]!.unitType,
        attributesAt: (i) => cells[i]!.attributes ?? NO_ATTRIBUTES,
      },
      options,
    );
  }

  /** Every unit against every experiment, experiment-major (result j * unitIds.length + i), without
   * building a cell object per pair. `attributes`: the same for every unit, or one per unit
   * (positional to unitIds). */
  async assignGrid(
    experiments: readonly (ExperimentConfig | undefined)[],
    unitIds: readonly string[],
    unitType: string,
    options: AssignOptionsLike,
    attributes: Attributes | readonly Attributes[] = NO_ATTRIBUTES,
  ): Promise<CellResult[]> {
    const n = unitIds.length;
    const perUnit = Array.isArray(attributes) ? (attributes as readonly Attributes[]) : undefined;
    const all = attributes as Attributes;
    return this.assignEach(
      {
        count: experiments.length * n,
        experimentAt: (i) => experiments[Math.floor(i / n)],
        unitIdAt: (i) => unitIds[i % n]!,
        unitTypeAt: () => unitType,
        attributesAt: perUnit ? (i) => perUnit[i % n]! : () => all,
      },
      options,
    );
  }

  private assignEach(cells: Cells, options: AssignOptionsLike): CellResult[] | Promise<CellResult[]> {
    const mark = this.trust.mark();
    const pass = this.memoryPass(cells);
    // Answered without I/O, in this turn: trust cannot have been withdrawn since it was asked.
    if (pass.lookups.size === 0) return pass.results;
    return this.afterMemory(pass, cells, options, mark);
  }

  private async afterMemory(pass: MemoryPass, cells: Cells, options: AssignOptionsLike, mark: number): Promise<CellResult[]> {
    const { count, experimentAt, unitIdAt, unitTypeAt, attributesAt } = cells;
    const results = await this.fromLayers(pass, attributesAt, options, mark);
    if (!this.trust.revokedSince(mark)) return results;
    // Trust was withdrawn while the batch ran (a change of stored values was learnt of, or the
    // server lost touch with the store): cached answers of experiments no longer trusted are asked
    // again, of the store. Only cached answers: a NEW one was stored by this batch and stays NEW.
    const redo: number[] = [];
    for (let i = 0; i < count; i++) {
      const layer = results[i]!.layer;
      if (layer !== Layer.MEMORY && layer !== Layer.REDIS) continue;
      const exp = experimentAt(i);
      if (exp && needsStoreLookup(exp) && !this.trust.trusts(exp)) redo.push(i);
    }
    if (redo.length === 0) return results;
    const again = await this.assignEach(
      {
        count: redo.length,
        experimentAt: (k) => experimentAt(redo[k]!),
        unitIdAt: (k) => unitIdAt(redo[k]!),
        unitTypeAt: (k) => unitTypeAt(redo[k]!),
        attributesAt: (k) => attributesAt(redo[k]!),
      },
      options,
    );
    redo.forEach((i, k) => (results[i] = again[k]!));
    return results;
  }

  /** Rules 1-4 and the in-process cache, cell by cell, without I/O: what is left needs a slower
   * layer (`lookups`, one per distinct cell). */
  private memoryPass({ count, experimentAt, unitIdAt, unitTypeAt, attributesAt }: Cells): MemoryPass {
    const results = new Array<CellResult>(count);
    const lookups = new Map<string, Lookup>();
    let memoryHits = 0;
    // Whether the caches may answer, asked once per run of cells of one experiment.
    let trustedFor: ExperimentConfig | undefined;
    let trusted = false;
    for (let i = 0; i < count; i++) {
      const experiment = experimentAt(i);
      const unitId = unitIdAt(i);
      const unitType = unitTypeAt(i);
      const refused = refuseUnit(experiment, unitId, unitType);
      if (refused) {
        results[i] = result(refused.reason, refused.variant, false, Layer.MEMORY);
        continue;
      }
      const exp = experiment!;
      if (!needsStoreLookup(exp)) {
        const e = decide(exp, unitId, undefined, attributesAt(i));
        results[i] = result(e.reason, e.variant, false, Layer.MEMORY);
        continue;
      }
      if (exp !== trustedFor) {
        trustedFor = exp;
        trusted = this.trust.trusts(exp);
      }
      // The in-process cache first, cell by cell: a hit needs no key string and no lookup object
      // (a warm batch allocates next to nothing); repeated units simply hit again.
      const hit = trusted ? this.memory.lookup(exp.id, exp.cacheGeneration, unitId) : undefined;
      if (hit) {
        memoryHits++;
        // Rule 5, the common case, without allocating; every other case through decide().
        const sticky = hit.source !== Source.OVERRIDE && isAssigning(exp) ? exp.variantsById.get(hit.variantId) : undefined;
        if (sticky) results[i] = result(Reason.STICKY, sticky, true, Layer.MEMORY);
        else {
          const e = decide(exp, unitId, hit, attributesAt(i));
          results[i] = result(e.reason, e.variant, STORED_REASONS.has(e.reason), Layer.MEMORY);
        }
        continue;
      }
      const key = cellId(exp.id, unitId);
      const l = lookups.get(key);
      if (l) (l.more ??= []).push(i);
      else
        lookups.set(key, {
          experiment: exp,
          experimentId: exp.id,
          generation: exp.cacheGeneration,
          unitId,
          key,
          first: i,
          more: undefined,
          trusted,
          cached: undefined,
          fresh: undefined,
        });
    }
    if (memoryHits + lookups.size > 0) this.metrics.lookups("memory", memoryHits, lookups.size);
    return { results, lookups };
  }

  /** Redis, a read replica and PostgreSQL for the cells the memory pass left. */
  private async fromLayers(
    { results, lookups }: MemoryPass,
    attributesAt: (i: number) => Attributes,
    options: AssignOptionsLike,
    mark: number,
  ): Promise<CellResult[]> {
    const answer = (l: Lookup, e: Evaluation, stored: boolean, layer: Layer) => {
      const r = result(e.reason, e.variant, stored, layer);
      results[l.first] = r;
      if (l.more) for (const p of l.more) results[p] = r;
    };
    const fromStored = (l: Lookup, s: StoredAssignment | undefined, layer: Layer) => {
      const e = decide(l.experiment, l.unitId, s, attributesAt(l.first));
      answer(l, e, STORED_REASONS.has(e.reason), layer);
    };
    /** The cell's evaluation when nothing is stored for it (rules 6 to 11), made once. */
    const fresh = (l: Lookup): Evaluation => (l.fresh ??= decide(l.experiment, l.unitId, undefined, attributesAt(l.first)));
    let missing = [...lookups.values()];

    // Redis, for the experiments whose caches are trusted.
    const asked = options.skipRedisRead ? [] : missing.every((l) => l.trusted) ? missing : missing.filter((l) => l.trusted);
    if (asked.length > 0) {
      const cached = await this.redis.getMany(asked);
      asked.forEach((l, k) => (l.cached = cached[k]));
    }
    // Trust withdrawn while Redis answered: what it answered for those experiments is not used.
    const revoked = asked.length > 0 && this.trust.revokedSince(mark);
    const redisHits: Lookup[] = [];
    const redisValues: StoredAssignment[] = [];
    const afterRedis: Lookup[] = [];
    missing.forEach((l) => {
      const hit = l.cached;
      if (hit && (!revoked || this.trust.trusts(l.experiment))) {
        fromStored(l, hit, Layer.REDIS);
        redisHits.push(l);
        redisValues.push(hit);
      } else afterRedis.push(l);
    });
    this.memory.setMany(redisHits, redisValues); // already in Redis
    if (!options.skipRedisRead) this.metrics.lookups("redis", redisHits.length, afterRedis.length);
    missing = afterRedis;
    if (missing.length === 0) return results;

    // A read replica, when there are any (and one is fresh enough: see readReplica). It answers
    // only what it holds; a cell it lacks may have been stored on the primary after what the
    // replica has replayed, so it goes on to the primary below, which answers it as if there were
    // no replica (an INSERT whose conflict reveals the stored row, or a read).
    if (this.store.readReplica) {
      const found = await this.store.readReplica(missing.map((l) => ({ experimentId: l.experiment.id, unitId: l.unitId })));
      if (found) {
        const hits: Lookup[] = [];
        const values: StoredAssignment[] = [];
        const rest: Lookup[] = [];
        missing.forEach((l, k) => {
          const s = found[k];
          if (s) {
            fromStored(l, s, Layer.POSTGRES);
            hits.push(l);
            values.push(s);
          } else rest.push(l);
        });
        this.metrics.lookups("replica", hits.length, rest.length);
        await this.fill(hits, values, options.paceToRedis === true);
        missing = rest;
        if (missing.length === 0) return results;
      }
    }

    // PostgreSQL. Cells the hash would enrol are inserted straight away (ON CONFLICT DO NOTHING):
    // a conflict means a stored row exists, and it is read back, so the answer is the same as
    // reading first, with one round trip fewer for new units. The other cells are read.
    const toRead: Lookup[] = [];
    const toInsert: Lookup[] = [];
    const rows: NewAssignment[] = [];
    for (const l of missing) {
      const e = options.dryRun ? undefined : fresh(l);
      if (e?.reason === Reason.NEW) {
        toInsert.push(l);
        rows.push({
          experimentId: l.experiment.id,
          unitId: l.unitId,
          variantId: e.variant!.id,
          version: l.experiment.version,
          source: Source.HASH,
        });
      } else toRead.push(l);
    }
    const filled: Lookup[] = [];
    const fillValues: StoredAssignment[] = [];
    const remember = (l: Lookup, s: StoredAssignment | undefined) => {
      if (!s) return;
      filled.push(l);
      fillValues.push(s);
    };
    const [read, inserted] = await Promise.allSettled([
      toRead.length > 0 ? this.store.read(toRead.map((l) => ({ experimentId: l.experiment.id, unitId: l.unitId }))) : [],
      toInsert.length > 0 ? this.store.insert(rows) : [],
    ]);
    let failure: unknown;
    if (read.status === "fulfilled") {
      toRead.forEach((l, k) => {
        const s = read.value[k];
        if (s) fromStored(l, s, Layer.POSTGRES);
        else answer(l, fresh(l), false, Layer.COMPUTED);
        remember(l, s);
      });
    } else failure = read.reason;
    if (inserted.status === "fulfilled") {
      toInsert.forEach((l, k) => {
        const { stored, won } = inserted.value[k]!;
        if (won) answer(l, { reason: Reason.NEW, variant: l.experiment.variantsById.get(stored!.variantId) }, true, Layer.COMPUTED);
        else fromStored(l, stored, Layer.POSTGRES);
        remember(l, stored);
      });
    } else failure ??= inserted.reason;
    if (read.status === "fulfilled" && !options.dryRun) failure ??= await this.noteHeldOut(toRead, results);
    let storedHits = 0;
    for (const l of missing) if (results[l.first]?.layer === Layer.POSTGRES) storedHits++;
    this.metrics.lookups("postgres", storedHits, missing.length - storedHits);
    await this.fill(filled, fillValues, options.paceToRedis === true);
    if (failure !== undefined) {
      const failed = [...(read.status === "rejected" ? toRead : []), ...(inserted.status === "rejected" ? toInsert : [])];
      return this.unstored(failure, failed, results, options, (l) => answer(l, fresh(l), false, Layer.COMPUTED));
    }
    return results;
  }

  /**
   * Writes stored values to the faster layers. The memory layer is written at once; the Redis write
   * is not waited for (the values are already stored in PostgreSQL, so the answer need not wait),
   * but it is tracked so that shutdown can wait for it. With `pace`, while Redis is behind by more
   * than MAX_PENDING_FILL_CELLS values, the caller waits for it to catch up: a stream that stores
   * faster than Redis takes the values is held to Redis's pace, instead of queueing fills until
   * they time out (which would also pause the Redis layer for everyone).
   */
  private async fill(lookups: Lookup[], values: StoredAssignment[], pace: boolean): Promise<void> {
    if (lookups.length === 0) return;
    this.memory.setMany(lookups, values);
    const n = lookups.length;
    this.pendingFillCells += n;
    const p: Promise<void> = this.redis.setMany(lookups, values).finally(() => {
      this.pendingFills.delete(p);
      this.pendingFillCells -= n;
    });
    this.pendingFills.add(p);
    while (pace && this.pendingFillCells > MAX_PENDING_FILL_CELLS) await Promise.race(this.pendingFills);
  }

  /** Notes the units answered HOLDOUT among `read` (GetHoldoutStats counts them); the failure, if any. */
  private async noteHeldOut(read: readonly Lookup[], results: readonly CellResult[]): Promise<unknown> {
    if (!this.store.recordHeldOut) return undefined;
    const rows: HeldOutUnit[] = [];
    for (const l of read) {
      if (results[l.first]!.reason !== Reason.HOLDOUT) continue;
      const h = holdingOut(l.experiment, l.unitId);
      if (h) rows.push({ holdoutId: h.id, experimentId: l.experiment.id, unitId: l.unitId });
    }
    if (rows.length === 0) return undefined;
    try {
      await this.store.recordHeldOut(rows);
      return undefined;
    } catch (err) {
      return err;
    }
  }

  /** Values sent to Redis and not yet acknowledged. */
  get pendingCacheWrites(): number {
    return this.pendingFillCells;
  }

  /** Resolves when every started cache write has finished. */
  async flush(): Promise<void> {
    while (this.pendingFills.size > 0) await Promise.all([...this.pendingFills]);
  }

  /** The store failed: UNAVAILABLE, or the hashed answers unstored when the call allows it. */
  private unstored(
    err: unknown,
    lookups: Lookup[],
    results: CellResult[],
    options: AssignOptionsLike,
    answerUnstored: (l: Lookup) => void,
  ): CellResult[] {
    if (!hasCode(err, Code.Unavailable) || !options.allowUnstored) throw err;
    for (const l of lookups) answerUnstored(l);
    return results;
  }
}
