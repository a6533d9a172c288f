import { Source } from "../../gen/ts/assignment/v1/types_pb.js";
import { storedValue, type StoredAssignment } from "../engine/evaluate.js";
import { DEFAULT_INSERT_CONCURRENCY, DEFAULT_INSERT_MAX_WAIT_MS } from "../server-defaults.js";
import { Coalescer } from "../util/coalescer.js";
import type { Database, Queryable } from "./database.js";
import { isMissingPartition, type PartitionLayout, PartitionLayoutCache } from "./partition-layout.js";
import { numberArray, textArray } from "./pg-arrays.js";

/** A (experiment, unit) pair whose stored assignment is wanted. */
export interface CellKey {
  experimentId: number;
  unitId: string;
}

export interface NewAssignment extends CellKey {
  variantId: number;
  /** The experiment's version at assignment. */
  version: bigint;
  source: Source;
}

/** What is stored for one inserted row: its own value (`won`), or what the cell answers from the
 * store otherwise: whoever stored it first, or the unit's override (a unit with an override is
 * never stored by hashing: rule 3 comes before rule 11). Undefined in the rare case where that
 * value was removed again before it could be read. */
export interface InsertOutcome {
  stored: StoredAssignment | undefined;
  won: boolean;
}

/** Stored assignments as the Assigner reads and writes them (AssignmentStore). */
export interface AssignmentStorage {
  /** Positional: element i is the stored assignment of cells[i], or undefined. */
  read(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[]>;
  /** Stores new assignments unless their cell holds one already or has an override. Positional: element i is the
   * outcome for rows[i]; of several rows naming one cell, the first wins. */
  insert(rows: NewAssignment[]): Promise<InsertOutcome[]>;
  /** Notes units answered HOLDOUT (for GetHoldoutStats); a unit already noted is left as it is. */
  recordHeldOut?(rows: readonly HeldOutUnit[]): Promise<void>;
  /** Stored values found on a read replica that is fresh enough (see ReplicaOptions), positional:
   * element i is what cells[i] answers from the store, or undefined when the replica holds
   * nothing for it (which proves nothing: the primary may have it). Undefined as a whole when no
   * replica may answer now. Absent: there are no replicas. */
  readReplica?(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[] | undefined>;
}

/** A unit a holdout held out of an experiment (rule 7). */
export interface HeldOutUnit extends CellKey {
  holdoutId: number;
}

/** Streaming replicas of the primary, for reads of stored assignments. */
export interface ReplicaOptions {
  /** One or more replicas, used in turn. */
  databases: readonly Queryable[];
  /** The least configuration epoch (config_epoch) a replica must be at for its answer to be used;
   * undefined: none may be used now (ConfigRegistry.replicaEpoch). */
  minEpoch: () => bigint | undefined;
  /** A replica failed a read (it is answered by the primary instead). */
  onError?: (err: unknown) => void;
}

export interface AssignmentStoreOptions {
  /** INSERT statements running at once before new rows wait to join a shared one; default
   * DEFAULT_INSERT_CONCURRENCY. */
  writeConcurrency?: number;
  /** Most rows in one shared INSERT; default 20,000. */
  maxBatchRows?: number;
  /** Longest a row waits for a shared INSERT while all slots are busy; default
   * DEFAULT_INSERT_MAX_WAIT_MS. */
  maxWaitMs?: number;
  /** Called with the number of rows of each INSERT statement (metrics). */
  onInsertBatch?: (rows: number) => void;
  /** Read replicas (see readReplica); none when absent. */
  replicas?: ReplicaOptions;
  /** Page-load reads name the unit's partition of assignments where the catalog shows a layout
   * this process understands (partition-layout.ts); default true. False: always the table itself. */
  partitionReads?: boolean;
  /** A read of the partition layout from the catalog failed (the table itself is read meanwhile). */
  onLayoutError?: (err: unknown) => void;
}

/** What the store answers for each cell: its override (rule 3) when it has one, else its stored
 * assignment (rule 5), with the cell's 1-based position; cells with neither are left out.
 * Overrides live apart (SPEC.md "Stored assignments"), so the stored row under an override stays
 * as it was and answers again once the override is cleared. One unit (a page load): its id is a
 * value of the statement, not of the join, so that the planner keeps only the unit's partition of
 * assignments (hash by unit id, migration 7); a join on unnested ids would plan every partition
 * and prune them row by row, at half the rate. Better still, where the layout is known
 * (partition-layout.ts), the statement names that partition itself: the database then plans and
 * reads a plain table, without the partitioned table's planning (a fifth of its planning time,
 * 7–9 % of the statement's; BENCHMARKS.md). Exported for bench/partitions.ts. */
export function readCells(
  cells: readonly CellKey[],
  layout: PartitionLayout | undefined,
): { text: string; values: unknown[]; partition?: string } {
  const unit = cells[0]!.unitId;
  const oneUnit = cells.every((c) => c.unitId === unit);
  const partition = oneUnit ? layout?.partitionOf(unit) : undefined;
  const text = `SELECT t.i, coalesce(o.variant, a.variant) AS variant,
              CASE WHEN o.variant IS NULL THEN a.source ELSE ${Source.OVERRIDE} END AS source
         FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS t(e, u, i)
         LEFT JOIN overrides o ON o.experiment_id = t.e AND o.unit_id = t.u
         LEFT JOIN ${partition ?? "assignments"} a ON a.experiment_id = t.e AND ${oneUnit ? "a.unit_id = $3::text" : "a.unit_id = t.u"}
        WHERE o.variant IS NOT NULL OR a.variant IS NOT NULL`;
  const values: unknown[] = [numberArray(cells.map((c) => c.experimentId)), textArray(cells.map((c) => c.unitId))];
  if (oneUnit) values.push(unit);
  return { text, values, partition };
}

/** readCells on a replica, with the configuration epoch the replica is at, from the same snapshot
 * (one statement): a row of its own with i = 0. */
function readCellsWithEpoch(
  cells: readonly CellKey[],
  layout: PartitionLayout | undefined,
): { text: string; values: unknown[]; partition?: string } {
  const q = readCells(cells, layout);
  return {
    partition: q.partition,
    text: `WITH found AS (${q.text})
       SELECT 0::bigint AS i, NULL::smallint AS variant, NULL::smallint AS source, (SELECT epoch::text FROM config_epoch) AS epoch
       UNION ALL
       SELECT i, variant, source, NULL FROM found`,
    values: q.values,
  };
}

/**
 * Stored assignments in PostgreSQL, read and written in batches: one statement per batch, never
 * one per row. Concurrent inserts from many calls are coalesced into shared statements.
 */
export class AssignmentStore implements AssignmentStorage {
  private readonly writes: Coalescer<NewAssignment, InsertOutcome>;
  private readonly onInsertBatch: ((rows: number) => void) | undefined;
  private readonly replicas: ReplicaOptions | undefined;
  readonly readReplica: AssignmentStorage["readReplica"];
  private nextReplica = 0;
  /** The partition layout of assignments, where page-load reads may name partitions. */
  readonly partitionLayout: PartitionLayoutCache | undefined;

  constructor(
    private readonly db: Database,
    options: AssignmentStoreOptions = {},
  ) {
    this.onInsertBatch = options.onInsertBatch;
    this.replicas = options.replicas && options.replicas.databases.length > 0 ? options.replicas : undefined;
    this.readReplica = this.replicas ? (cells) => this.readFromReplica(cells) : undefined;
    this.partitionLayout = options.partitionReads === false ? undefined : new PartitionLayoutCache(db, undefined, options.onLayoutError);
    this.writes = new Coalescer((rows) => this.insertNow(rows), {
      concurrency: options.writeConcurrency ?? DEFAULT_INSERT_CONCURRENCY,
      maxItems: options.maxBatchRows ?? 20_000,
      maxWaitMs: options.maxWaitMs ?? DEFAULT_INSERT_MAX_WAIT_MS,
    });
  }

  /** Rows waiting for or inside an INSERT. */
  get pendingWrites(): number {
    return this.writes.pending;
  }

  /** Resolves when every accepted write has been answered. */
  flush(): Promise<void> {
    return this.writes.drain();
  }

  /** Positional: element i is what the store answers for cells[i] (its override, source OVERRIDE,
   * else its stored assignment), or undefined. Read on the primary. */
  async read(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[]> {
    const out = new Array<StoredAssignment | undefined>(cells.length);
    if (cells.length === 0) return out;
    let q = readCells(cells, this.partitionLayout?.current());
    let rows: { i: string; variant: number; source: number }[];
    try {
      ({ rows } = await this.db.query(q.text, q.values));
    } catch (err) {
      // The partition named is gone (the table was made again): read the table itself.
      if (q.partition === undefined || !isMissingPartition(err)) throw err;
      this.partitionLayout!.invalidate();
      q = readCells(cells, undefined);
      ({ rows } = await this.db.query(q.text, q.values));
    }
    for (const r of rows) out[Number(r.i) - 1] = storedValue(r.variant, r.source);
    return out;
  }

  /**
   * What a replica answers for the cells, from one statement that also reads the replica's
   * configuration epoch (the same snapshot). Used only when that epoch is at least `minEpoch()`,
   * both before and after the read: every change of stored values this server knows of has then
   * reached the replica (each raises the epoch in its own transaction, and a replica replays
   * transactions in commit order). What is missing there may still be on the primary (not
   * replicated yet): the caller asks the primary for those cells. A replica that fails is
   * reported and answers nothing (undefined), as does a stale one.
   */
  private async readFromReplica(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[] | undefined> {
    const replicas = this.replicas!;
    const before = replicas.minEpoch();
    if (before === undefined || cells.length === 0) return undefined;
    const replica = replicas.databases[this.nextReplica++ % replicas.databases.length]!;
    let rows: { i: string; variant: number | null; source: number | null; epoch: string | null }[];
    try {
      const q = readCellsWithEpoch(cells, this.partitionLayout?.current());
      ({ rows } = await replica.query(q.text, q.values));
    } catch (err) {
      if (isMissingPartition(err)) this.partitionLayout?.invalidate();
      replicas.onError?.(err);
      return undefined;
    }
    const after = replicas.minEpoch();
    const at = rows[0]?.epoch;
    if (after === undefined || at == null || BigInt(at) < (after > before ? after : before)) return undefined;
    const out = new Array<StoredAssignment | undefined>(cells.length);
    for (let k = 1; k < rows.length; k++) {
      const r = rows[k]!;
      out[Number(r.i) - 1] = storedValue(r.variant!, r.source!);
    }
    return out;
  }

  /**
   * Stores new assignments (INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING, shared with
   * concurrent callers; cells with an override are left out), then reads back the cells that
   * lost a race to another writer or have an override.
   * Positional: element i is the outcome for rows[i].
   */
  insert(rows: NewAssignment[]): Promise<InsertOutcome[]> {
    return this.writes.submit(rows);
  }

  async recordHeldOut(rows: readonly HeldOutUnit[]): Promise<void> {
    if (rows.length === 0) return;
    // One order for every writer (holdout, experiment, unit), so that racing statements wait
    // instead of deadlocking.
    const sorted = [...rows].sort(
      (a, b) => a.holdoutId - b.holdoutId || a.experimentId - b.experimentId || (a.unitId < b.unitId ? -1 : a.unitId > b.unitId ? 1 : 0),
    );
    await this.db.query(
      `INSERT INTO holdout_units (holdout_id, experiment_id, unit_id)
       SELECT * FROM unnest($1::int[], $2::int[], $3::text[]) ON CONFLICT DO NOTHING`,
      [numberArray(sorted.map((r) => r.holdoutId)), numberArray(sorted.map((r) => r.experimentId)), textArray(sorted.map((r) => r.unitId))],
    );
  }

  private async insertNow(rows: readonly NewAssignment[]): Promise<InsertOutcome[]> {
    // Rows of different callers may name the same cell: insert each cell once, through the first
    // row naming it (its representative). Cells are grouped by experiment, keyed by unit id.
    const byExperiment = new Map<number, Map<string, number>>();
    const rep = new Int32Array(rows.length);
    let lastId = -1;
    let units: Map<string, number> | undefined;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (r.experimentId !== lastId) {
        lastId = r.experimentId;
        units = byExperiment.get(lastId);
        if (!units) byExperiment.set(lastId, (units = new Map()));
      }
      const seen = units!.get(r.unitId);
      if (seen === undefined) {
        units!.set(r.unitId, i);
        rep[i] = i;
      } else rep[i] = seen;
    }
    // Every writer inserts in the same order (experiment id, then unit id by UTF-16 code units), so
    // two racing statements wait on each other instead of deadlocking. Sorting the ids themselves
    // (no comparator) is several times faster than sorting rows with a comparator.
    const unique: number[] = [];
    for (const id of [...byExperiment.keys()].sort((a, b) => a - b)) {
      const m = byExperiment.get(id)!;
      for (const u of [...m.keys()].sort()) unique.push(m.get(u)!);
    }
    const n = unique.length;
    const position = new Int32Array(rows.length); // row index of a representative -> its place in `unique`
    this.onInsertBatch?.(n);
    const e = new Array<number>(n);
    const u = new Array<string>(n);
    const v = new Array<number>(n);
    const ver = new Array<bigint>(n);
    const s = new Array<number>(n);
    for (let k = 0; k < n; k++) {
      const row = unique[k]!;
      const r = rows[row]!;
      position[row] = k;
      e[k] = r.experimentId;
      u[k] = r.unitId;
      v[k] = r.variantId;
      ver[k] = r.version;
      s[k] = r.source;
    }
    // The common case (every row new) returns one row with a count, not n unit ids to parse: the
    // inserted cells are listed only when some were not.
    const { rows: answer } = await this.db.query<{ n: number; e: number[] | null; u: string[] | null }>(
      `WITH ins AS (
         INSERT INTO assignments (experiment_id, unit_id, variant, version, source)
         SELECT * FROM unnest($1::int[], $2::text[], $3::smallint[], $4::bigint[], $5::smallint[]) AS t(e, u, v, ver, s)
          WHERE NOT EXISTS (SELECT 1 FROM overrides o WHERE o.experiment_id = t.e AND o.unit_id = t.u)
         ON CONFLICT DO NOTHING
         RETURNING experiment_id, unit_id
       )
       SELECT count(*)::int AS n,
              CASE WHEN count(*) < $6 THEN array_agg(experiment_id) END AS e,
              CASE WHEN count(*) < $6 THEN array_agg(unit_id) END AS u
         FROM ins`,
      [numberArray(e), textArray(u), numberArray(v), numberArray(ver), numberArray(s), n],
    );
    const outcome = new Array<InsertOutcome>(n);
    for (let k = 0; k < n; k++) outcome[k] = outcomeOf(storedValue(v[k]!, s[k]!), true);
    const counted = answer[0]!;
    if (counted.n < n) {
      const winners = new Set((counted.e ?? []).map((id, k) => cellId(id, counted.u![k]!)));
      const lost: number[] = [];
      for (let k = 0; k < n; k++) if (!winners.has(cellId(e[k]!, u[k]!))) lost.push(k);
      const current = await this.read(lost.map((k) => rows[unique[k]!]!));
      lost.forEach((k, j) => (outcome[k] = outcomeOf(current[j], false)));
    }
    // Only the representative row was written; a later row naming the same cell (another
    // caller's) lost the race to it and must not answer NEW as well.
    const out = new Array<InsertOutcome>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const o = outcome[position[rep[i]!]!]!;
      out[i] = rep[i] === i ? o : outcomeOf(o.stored, false);
    }
    return out;
  }
}

// Outcomes are shared, like stored values: a handful per batch, not one object per row.
const outcomes = new Map<StoredAssignment | undefined, [InsertOutcome, InsertOutcome]>();
function outcomeOf(stored: StoredAssignment | undefined, won: boolean): InsertOutcome {
  let pair = outcomes.get(stored);
  if (!pair) outcomes.set(stored, (pair = [Object.freeze({ stored, won: false }), Object.freeze({ stored, won: true })]));
  return pair[won ? 1 : 0];
}

export function cellId(experimentId: number, unitId: string): string {
  return experimentId + "\u0000" + unitId;
}
