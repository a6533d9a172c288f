import type { Queryable } from "./database.js";

/** The NOTIFY channel of configuration changes; the payload is the new epoch. */
export const CONFIG_CHANNEL = "assignment_config";

/**
 * Signals a configuration change: bumps the configuration epoch and tells every server (NOTIFY is
 * delivered when the transaction commits). Every change to what servers hold in memory
 * (experiments, namespaces, segments, overrides, cache generations) calls it in its transaction.
 */
export async function signalConfigChange(tx: Queryable): Promise<void> {
  const { rows } = await tx.query<{ epoch: string }>(`UPDATE config_epoch SET epoch = epoch + 1 RETURNING epoch::text AS epoch`);
  await tx.query(`SELECT pg_notify($1, $2)`, [CONFIG_CHANNEL, rows[0]!.epoch]);
}

/** The configuration epoch: servers compare it with theirs to notice changes they missed. */
export async function readConfigEpoch(q: Queryable): Promise<bigint> {
  const { rows } = await q.query<{ epoch: string }>(`SELECT epoch::text AS epoch FROM config_epoch`);
  return BigInt(rows[0]!.epoch);
}
