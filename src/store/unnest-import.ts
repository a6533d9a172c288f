import { cancelled } from "../errors.js";
import type { Session } from "./database.js";
import { type ImportStaging, mergeStaged } from "./import-staging.js";

/** Rows staged per INSERT … SELECT FROM unnest. */
const UNNEST_STAGING_ROWS = 10_000;

let stagingTables = 0;

/**
 * An import for a database without COPY streams (PGlite): rows are staged by INSERT … SELECT FROM
 * unnest into a temporary table of their own, on `session`, and `commit` merges it into
 * assignments and drops it in one transaction. Staging outside that transaction keeps a slow
 * client from holding PGlite's only connection for the whole upload; nothing reaches assignments
 * before the merge commits, so the import is all or nothing exactly as with COPY.
 */
export async function beginUnnestImport(session: Session): Promise<ImportStaging> {
  const table = `import_staging_${++stagingTables}`;
  try {
    await session.query(`CREATE TEMP TABLE ${table} (pos bigint, experiment_id int, unit_id text, variant smallint)`);
  } catch (err) {
    session.release();
    throw err;
  }
  let done = false;
  let staged = 0;
  const finish = async () => {
    if (done) return;
    done = true;
    await session.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    session.release();
  };
  return {
    async write(rows) {
      if (done) throw new Error("import already finished");
      for (let i = 0; i < rows.unitIds.length; i += UNNEST_STAGING_ROWS) {
        const end = Math.min(i + UNNEST_STAGING_ROWS, rows.unitIds.length);
        await session.query(
          `INSERT INTO ${table} SELECT $1::bigint + n - 1, e, u, v FROM unnest($2::int[], $3::text[], $4::smallint[]) WITH ORDINALITY AS t(e, u, v, n)`,
          [
            staged + i,
            Array.from(rows.experimentIds.subarray(i, end)),
            rows.unitIds.slice(i, end),
            Array.from(rows.variantIds.subarray(i, end)),
          ],
        );
      }
      staged += rows.unitIds.length;
    },
    async commit(overwrite, wanted, record) {
      try {
        const result = await session.transaction(async (tx) => {
          const r = await mergeStaged(tx, table, overwrite);
          await tx.query(`DROP TABLE ${table}`);
          if (record) await record(tx, r);
          if (wanted && !wanted()) throw cancelled("the client cancelled the import; nothing was stored");
          return r;
        });
        done = true;
        session.release();
        return result;
      } finally {
        await finish();
      }
    },
    abort: finish,
  };
}
