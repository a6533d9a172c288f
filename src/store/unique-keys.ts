import { alreadyExists } from "../errors.js";
import { signalConfigChange } from "./config-change.js";
import type { Database, Queryable } from "./database.js";
import { isUniqueViolation } from "./pg-errors.js";

/** Keys are unique per kind, salts across experiments, namespaces and holdouts (SPEC.md): a
 * reused salt would make two "independent" splits identical. */

/** Claims `salt` for `owner` ("experiment:<key>", "namespace:<key>", "holdout:<key>") inside `tx`, else
 * ALREADY_EXISTS naming who has it. */
export async function claimSalt(tx: Queryable, salt: string, owner: string): Promise<void> {
  const { rows } = await tx.query<{ owner: string }>(
    `INSERT INTO salts (salt, owner) VALUES ($1, $2) ON CONFLICT (salt) DO NOTHING RETURNING owner`,
    [salt, owner],
  );
  if (rows.length === 0) {
    const { rows: prev } = await tx.query<{ owner: string; archived: boolean }>(
      `SELECT s.owner, coalesce(e.archived_at, n.archived_at) IS NOT NULL AS archived
         FROM salts s
         LEFT JOIN experiments e ON s.owner = 'experiment:' || e.key
         LEFT JOIN namespaces n ON s.owner = 'namespace:' || n.key
        WHERE s.salt = $1`,
      [salt],
    );
    const owner = prev[0] ? `${prev[0].owner}${prev[0].archived ? " (archived: salts stay taken forever)" : ""}` : undefined;
    throw alreadyExists(
      `salt: already used by ${owner ?? "another experiment, namespace or holdout"}; salts must be unique across experiments, namespaces and holdouts`,
    );
  }
}

/**
 * Creates the experiment or namespace `key` with `salt` through `insert`, in one transaction that
 * also signals the configuration change. ALREADY_EXISTS when the key is taken (also by a creation
 * racing this one) or the salt is.
 */
export async function createUnique<R>(
  db: Database,
  kind: "experiment" | "namespace" | "holdout",
  key: string,
  salt: string,
  insert: (tx: Queryable) => Promise<R>,
): Promise<R> {
  const taken = () => alreadyExists(`key: ${kind} "${key}" already exists`);
  try {
    return await db.transaction(async (tx) => {
      // Holdouts are never archived.
      const archived = kind === "holdout" ? "false" : "archived_at IS NOT NULL";
      const exists = await tx.query<{ archived: boolean }>(`SELECT ${archived} AS archived FROM ${kind}s WHERE key = $1`, [key]);
      if (exists.rows[0]?.archived) {
        throw alreadyExists(
          `key: ${kind} "${key}" already exists, archived; keys and salts of archived ${kind}s stay taken forever (reusing a salt would recreate old splits): choose another key, or unarchive it`,
        );
      }
      if (exists.rowCount > 0) throw taken();
      await claimSalt(tx, salt, `${kind}:${key}`);
      const created = await insert(tx);
      await signalConfigChange(tx);
      return created;
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw taken();
    throw err;
  }
}
