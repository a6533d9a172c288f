import type { Queryable } from "./database.js";
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
 * in-place upgrade), or not as this server computes it (hash of unit_id alone, text's default
 * hash operator class, a deterministic collation, UTF-8, every partition a plain table of one
 * modulus, one per remainder), or a partition lacks one of the partitioned table's INSERT
 * triggers (migration 17 gives them the event log's): a row stored through such a partition would
 * miss its event.
 */
export async function partitionRoute(q: Queryable): Promise<PartitionRoute | undefined> {
  const { rows } = await q.query<{ name: string; bound: string; routable: boolean }>(
    `WITH parent AS (
       SELECT coalesce((SELECT string_agg(t.tgname || ':' || t.tgfoid || ':' || t.tgtype || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
                          FROM pg_trigger t WHERE t.tgrelid = 'assignments'::regclass AND NOT t.tgisinternal AND t.tgtype & 4 <> 0), '') AS triggers,
              EXISTS (SELECT 1 FROM pg_partitioned_table p
                        JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                        JOIN pg_collation coll ON coll.oid = p.partcollation[0]
                        JOIN pg_opclass oc ON oc.oid = p.partclass[0]
                        JOIN pg_am am ON am.oid = oc.opcmethod
                       WHERE p.partrelid = 'assignments'::regclass AND p.partstrat = 'h' AND p.partnatts = 1
                         AND a.attname = 'unit_id' AND coll.collisdeterministic
                         AND am.amname = 'hash' AND oc.opcname = 'text_ops' AND oc.opcdefault)
                AND current_setting('server_encoding') = 'UTF8' AS hashed)
     SELECT c.oid::regclass::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
            parent.hashed AND c.relkind = 'r' AND parent.triggers =
              coalesce((SELECT string_agg(t.tgname || ':' || t.tgfoid || ':' || t.tgtype || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
                          FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgtype & 4 <> 0), '') AS routable
       FROM parent, pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'assignments'::regclass`,
  );
  if (rows.length === 0 || rows.length > MAX_ROUTED_PARTITIONS) return undefined;
  const names: string[] = [];
  for (const row of rows) {
    const bound = /^FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)$/.exec(row.bound);
    if (!row.routable || !bound || Number(bound[1]) !== rows.length) return undefined;
    names[Number(bound[2])] = row.name;
  }
  // One partition per remainder (a modulus of n with n partitions leaves none out).
  for (let r = 0; r < rows.length; r++) if (names[r] === undefined) return undefined;
  return { modulus: rows.length, names };
}

/** The remainder (an index into `route.names`) of the partition holding `unitId`. */
export function partitionOf(route: PartitionRoute, unitId: string): number {
  return hashPartitionRemainder(unitId, route.modulus);
}
