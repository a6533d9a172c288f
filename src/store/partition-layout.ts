import type { Queryable } from "./database.js";
import { hashPartitionRemainder } from "./partition-remainder.js";
import { sqlState } from "./pg-errors.js";

/**
 * Which partition of assignments holds a unit, as the database's catalog says now: so that a
 * page-load read can name that partition (assignment-store.ts, readCells) instead of the
 * partitioned table. Through the parent, each statement costs the database the work of a
 * partitioned table's planning (its partition descriptor, pruning: a fifth more planning time than
 * the unpartitioned table, 7-9 % of the statement; BENCHMARKS.md "Page loads naming the unit's
 * partition"); named, the partition is planned and read as a plain table.
 *
 * Used only where the layout is fully understood: assignments hash-partitioned on unit_id alone
 * (text, its hash operator class hashtextextended, a deterministic collation: the hash is of the
 * bytes) in a UTF-8 database, every partition a FOR VALUES WITH (MODULUS, REMAINDER). Anything
 * else (an unpartitioned table, or one not yet swapped in by the in-place upgrade, whose partitions
 * belong to assignments_partitioned: partition-move.ts) reads through the table itself.
 */
export interface PartitionLayout {
  /** The SQL name (quoted as needed) of the partition holding the unit's rows; undefined when no
   * partition accepts it (none holds it: the table answers the same, nothing). */
  partitionOf(unitId: string): string | undefined;
}

/** A partition of assignments: its SQL name and its FOR VALUES WITH (MODULUS, REMAINDER). */
export interface PartitionBound {
  name: string;
  modulus: number;
  remainder: number;
}

/** The partitions of the live assignments table with their bounds, or undefined when the table is
 * not partitioned in a way understood here (see above). Also what an import routes by
 * (partition-route.ts). */
export async function readPartitionBounds(db: Queryable): Promise<PartitionBound[] | undefined> {
  const { rows } = await db.query<{ names: string[]; bounds: string[] }>(
    `SELECT ARRAY(SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = pt.partrelid ORDER BY c.oid) AS names,
            ARRAY(SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = pt.partrelid ORDER BY c.oid) AS bounds
       FROM pg_partitioned_table pt
       JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
       JOIN pg_collation k ON k.oid = pt.partcollation[0]
      WHERE pt.partrelid = to_regclass('assignments')
        AND pt.partstrat = 'h' AND pt.partnatts = 1
        AND a.attname = 'unit_id' AND a.atttypid = 'text'::regtype
        AND k.collisdeterministic AND current_setting('server_encoding') = 'UTF8'
        AND EXISTS (SELECT FROM pg_opclass o JOIN pg_amproc p ON p.amprocfamily = o.opcfamily
                     WHERE o.oid = pt.partclass[0] AND p.amprocnum = 2
                       AND p.amproclefttype = 'text'::regtype AND p.amprocrighttype = 'text'::regtype
                       AND p.amproc = 'hashtextextended'::regproc)`,
  );
  const found = rows[0];
  if (!found || found.names.length === 0) return undefined;
  const bounds: PartitionBound[] = [];
  for (let k = 0; k < found.names.length; k++) {
    const m = /^FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)$/.exec(found.bounds[k] ?? "");
    if (!m) return undefined;
    bounds.push({ name: found.names[k]!, modulus: Number(m[1]), remainder: Number(m[2]) });
  }
  return bounds;
}

/** The layout of the live assignments table, or undefined when it is not one understood here. */
export async function readPartitionLayout(db: Queryable): Promise<PartitionLayout | undefined> {
  const bounds = await readPartitionBounds(db);
  if (!bounds) return undefined;
  // As PostgreSQL does (get_partition_for_tuple): every modulus divides the greatest one, so the
  // remainder by the greatest modulus picks the partition, through a table of that many slots.
  const greatest = Math.max(...bounds.map((b) => b.modulus));
  if (greatest > MAX_MODULUS || bounds.some((b) => greatest % b.modulus !== 0)) return undefined;
  const slots = new Array<string | undefined>(greatest).fill(undefined);
  for (const b of bounds) for (let r = b.remainder; r < greatest; r += b.modulus) slots[r] = b.name;
  return { partitionOf: (unitId) => slots[hashPartitionRemainder(unitId, greatest)] };
}

/** The greatest modulus understood (PostgreSQL allows more; ASSIGNMENT_PARTITIONS is at most 1,024). */
const MAX_MODULUS = 65_536;

/** How long a layout read from the catalog is used before it is read again. */
export const PARTITION_LAYOUT_TTL_MS = 5_000;

/**
 * The layout, kept fresh without waiting on the hot path: `current()` answers what was last read
 * (undefined before the first read, or when the table is not understood: read the table itself),
 * and starts a new read of the catalog once the last one is older than `ttlMs`. A change of the
 * table's layout (the in-place upgrade's swap, by this or another server) is therefore followed
 * within about `ttlMs`; until then the old answer holds, which is right for the swap: before it
 * the layout is undefined, and reading the table itself is right at any time. A statement naming a
 * partition that no longer exists fails (undefined_table): the caller calls `invalidate()` and
 * reads the table itself (isMissingPartition).
 */
export class PartitionLayoutCache {
  private layout: PartitionLayout | undefined;
  private readAt = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | undefined;
  /** Raised by invalidate: a read of the catalog begun before it may have seen the old layout. */
  private generation = 0;
  private readingGeneration = 0;

  constructor(
    private readonly db: Queryable,
    private readonly ttlMs = PARTITION_LAYOUT_TTL_MS,
    private readonly onError?: (err: unknown) => void,
  ) {}

  current(): PartitionLayout | undefined {
    if (performance.now() - this.readAt >= this.ttlMs) void this.refresh();
    return this.layout;
  }

  /** Reads the catalog now (a read under way since the last invalidate is joined); resolves when
   * done. A failed read keeps nothing: the table itself is read until a later read succeeds. */
  refresh(): Promise<void> {
    if (this.reading && this.readingGeneration === this.generation) return this.reading;
    const generation = this.generation;
    const reading = (async () => {
      try {
        const layout = await readPartitionLayout(this.db);
        // A read begun before an invalidate may have seen the old layout: its answer is dropped.
        if (generation === this.generation) this.layout = layout;
      } catch (err) {
        if (generation === this.generation) this.layout = undefined;
        this.onError?.(err);
      } finally {
        if (generation === this.generation) this.readAt = performance.now();
        if (this.readingGeneration === generation) this.reading = undefined; // (one read at a time per generation)
      }
    })();
    this.reading = reading;
    this.readingGeneration = generation;
    return reading;
  }

  /** Forgets the layout (a statement found a partition missing): the table itself is read until
   * the catalog is read again, at once. */
  invalidate(): void {
    this.generation++;
    this.layout = undefined;
    this.readAt = Number.NEGATIVE_INFINITY;
  }
}

/** The error of a statement that named a relation that does not exist (undefined_table). */
export function isMissingPartition(err: unknown): boolean {
  return sqlState(err) === "42P01";
}
