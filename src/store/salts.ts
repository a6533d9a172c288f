import { alreadyExists } from "../errors.js";
import type { Queryable } from "./database.js";

/** Claims `salt` for `owner` ("experiment:<key>", "namespace:<key>") inside `tx`: salts are unique
 * across experiments and namespaces (SPEC.md), else ALREADY_EXISTS naming who has it. */
export async function claimSalt(tx: Queryable, salt: string, owner: string): Promise<void> {
  const { rows } = await tx.query<{ owner: string }>(
    `INSERT INTO salts (salt, owner) VALUES ($1, $2) ON CONFLICT (salt) DO NOTHING RETURNING owner`,
    [salt, owner],
  );
  if (rows.length === 0) {
    const { rows: prev } = await tx.query<{ owner: string }>(`SELECT owner FROM salts WHERE salt = $1`, [salt]);
    throw alreadyExists(
      `salt: already used by ${prev[0]?.owner ?? "another experiment or namespace"}; salts must be unique across experiments and namespaces`,
    );
  }
}
