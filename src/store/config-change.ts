import type { Queryable } from "./database.js";

/** The NOTIFY channel of configuration changes. The payload is `<epoch>:<ids>`: the new epoch, and
 * the ids (comma-separated, maybe none) of the experiments whose stored values changed (overrides,
 * overwriting imports, erasures), or `*` when they are too many to name. */
export const CONFIG_CHANNEL = "assignment_config";

/** NOTIFY payloads must stay below 8,000 bytes; a longer list of experiments is sent as `*`. */
const MAX_PAYLOAD_CHARS = 7_000;

/**
 * Signals a configuration change: bumps the configuration epoch and tells every server (NOTIFY is
 * delivered when the transaction commits). Every change to what servers hold in memory
 * (experiments, namespaces, segments, overrides, cache generations) calls it in its transaction.
 * `valuesChanged`: the experiments whose stored values (what a unit is answered) the transaction
 * changes; every server stops answering cached values of those as soon as the NOTIFY arrives,
 * before it has reloaded its configuration (see ConfigRegistry).
 */
export async function signalConfigChange(tx: Queryable, valuesChanged: readonly number[] = []): Promise<void> {
  const { rows } = await tx.query<{ epoch: string }>(`UPDATE config_epoch SET epoch = epoch + 1 RETURNING epoch::text AS epoch`);
  let payload = `${rows[0]!.epoch}:${valuesChanged.join(",")}`;
  if (payload.length > MAX_PAYLOAD_CHARS) payload = `${rows[0]!.epoch}:*`;
  await tx.query(`SELECT pg_notify($1, $2)`, [CONFIG_CHANNEL, payload]);
}

/** A configuration NOTIFY's payload: its epoch, and the experiments whose stored values changed
 * ("all": unknown, or too many to name). An unreadable payload is undefined. */
export function parseConfigChange(payload: string): { epoch: bigint; valuesChanged: number[] | "all" } | undefined {
  const colon = payload.indexOf(":");
  const epochText = colon < 0 ? payload : payload.slice(0, colon);
  if (!/^\d{1,19}$/.test(epochText)) return undefined;
  const epoch = BigInt(epochText);
  // No list at all: a server of an older version sent it, which names nothing.
  if (colon < 0) return { epoch, valuesChanged: "all" };
  const rest = payload.slice(colon + 1);
  if (rest === "") return { epoch, valuesChanged: [] };
  if (rest === "*") return { epoch, valuesChanged: "all" };
  const ids = rest.split(",").map(Number);
  if (ids.some((id) => !Number.isSafeInteger(id) || id < 0)) return { epoch, valuesChanged: "all" };
  return { epoch, valuesChanged: ids };
}

/** The configuration epoch: servers compare it with theirs to notice changes they missed. */
export async function readConfigEpoch(q: Queryable): Promise<bigint> {
  const { rows } = await q.query<{ epoch: string }>(`SELECT epoch::text AS epoch FROM config_epoch`);
  return BigInt(rows[0]!.epoch);
}
