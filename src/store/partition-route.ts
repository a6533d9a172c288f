import type { Queryable } from "./database.js";
import { readPartitionBounds } from "./partition-layout.js";
import { hashPartitionRemainder } from "./partition-remainder.js";

/**
 * The partitions of assignments by remainder, when a statement may name one of them instead of
 * the partitioned table (copy-import.ts COPYs each partition's rows into it): `names[r]` holds the
 * units whose hash remainder by `modulus` is r.
 */
export interface PartitionRoute {
  modulus: number;
  names: string[];
}

/** Most partitions an import COPYs into one by one (each COPY has a fixed cost). */
export const MAX_ROUTED_PARTITIONS = 64;

/**
 * The route of assignments' partitions, or undefined when rows must go through the partitioned
 * table: assignments is not partitioned (PGlite's own path aside, the old table during an
 * in-place upgrade), or not as this server computes it (readPartitionBounds, which page loads
 * use too; here also every partition a plain table of one modulus, one per remainder), or a partition lacks one of the partitioned table's INSERT
 * triggers (migration 17 gives them the event log's): a row stored through such a partition would
 * miss its event.
 */
export async function partitionRoute(q: Queryable): Promise<PartitionRoute | undefined> {
  const bounds = await readPartitionBounds(q);
  if (!bounds || bounds.length > MAX_ROUTED_PARTITIONS) return undefined;
  const names: string[] = [];
  for (const b of bounds) {
    if (b.modulus !== bounds.length) return undefined;
    names[b.remainder] = b.name;
  }
  // One partition per remainder (a modulus of n with n partitions leaves none out).
  for (let r = 0; r < bounds.length; r++) if (names[r] === undefined) return undefined;
  // The partitions that are plain tables with the partitioned table's INSERT triggers: all of
  // them, the same ones as above (a change of partitions in between reads the table itself).
  const { rows } = await q.query<{ routable: string[] | null }>(
    `WITH t AS (
       SELECT c.oid, c.relkind,
              coalesce((SELECT string_agg(g.tgname || ':' || g.tgfoid || ':' || g.tgtype || ':' || g.tgenabled::text, ',' ORDER BY g.tgname)
                          FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal AND g.tgtype & 4 <> 0), '') AS triggers
         FROM pg_class c
        WHERE c.oid = 'assignments'::regclass
           OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = 'assignments'::regclass))
     SELECT array_agg(p.oid::regclass::text) FILTER (WHERE p.relkind = 'r' AND p.triggers = a.triggers) AS routable
       FROM t p, t a
      WHERE a.oid = 'assignments'::regclass AND p.oid <> a.oid`,
  );
  const routable = new Set(rows[0]?.routable ?? []);
  return routable.size === names.length && names.every((n) => routable.has(n)) ? { modulus: names.length, names } : undefined;
}

/** The remainder (an index into `route.names`) of the partition holding `unitId`. */
export function partitionOf(route: PartitionRoute, unitId: string): number {
  return hashPartitionRemainder(unitId, route.modulus);
}
