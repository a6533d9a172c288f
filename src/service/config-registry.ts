import { HASH_VERSIONS } from "../engine/hash.js";
import { buildExperimentConfig, type ExperimentConfig, type NamespaceConfig } from "../engine/experiment-config.js";
import type { Database } from "../store/database.js";
import { CONFIG_CHANNEL } from "../store/config-change.js";
import type { ConfigSnapshot, ExperimentStore } from "../store/experiment-store.js";

/**
 * The experiment configuration every evaluation reads, held in memory so that an assignment never
 * waits on a configuration query. Refreshed when PostgreSQL announces a change (LISTEN/NOTIFY),
 * by a periodic epoch check as a fallback for missed notifications, and synchronously by the
 * admin calls of this process before they return.
 */
export class ConfigRegistry {
  private byKey = new Map<string, ExperimentConfig>();
  private sorted: ExperimentConfig[] = [];
  private namespaces = new Map<string, NamespaceConfig>();
  private epoch = -1n;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly store: ExperimentStore,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  get(key: string): ExperimentConfig | undefined {
    return this.byKey.get(key);
  }

  /** All experiments, sorted by key. */
  all(): readonly ExperimentConfig[] {
    return this.sorted;
  }

  namespace(key: string): NamespaceConfig | undefined {
    return this.namespaces.get(key);
  }

  get currentEpoch(): bigint {
    return this.epoch;
  }

  /** Loads the configuration, then follows changes: by NOTIFY where the database has it, and by
   * a check of the epoch every `checkIntervalMs`. */
  async start(checkIntervalMs = 1_000): Promise<void> {
    const notifications = this.db.notifications;
    if (notifications) {
      await notifications.listen(
        CONFIG_CHANNEL,
        (payload) => {
          if (payload === "" || BigInt(payload) > this.epoch) this.refresh().catch((e) => this.log(`config refresh failed: ${e.message}`));
        },
        () => this.refresh().catch((e) => this.log(`config refresh failed: ${e.message}`)),
      );
    } else {
      this.log(`the database has no LISTEN/NOTIFY: changes made through other servers are served within ${checkIntervalMs} ms`);
    }
    await this.refresh();
    this.timer = setInterval(() => {
      this.store
        .configEpoch()
        .then((e) => (e !== this.epoch ? this.refresh() : undefined))
        .catch((e) => this.log(`config epoch check failed: ${e.message}`));
    }, checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Reloads the whole configuration; concurrent calls share one load, plus one more if a change
   * arrived while loading. Resolves once a load that started after the call has finished. */
  refresh(): Promise<void> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight.then(() => this.inFlight ?? Promise.resolve());
    }
    this.inFlight = (async () => {
      try {
        do {
          this.again = false;
          this.apply(await this.store.loadConfig());
        } while (this.again);
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  private apply(s: ConfigSnapshot): void {
    if (s.epoch < this.epoch) return;
    const namespacesById = new Map<number, NamespaceConfig>();
    const namespaces = new Map<string, NamespaceConfig>();
    for (const n of s.namespaces) {
      const owners = new Int32Array(n.segments);
      for (const [segment, experimentId] of s.segments.get(n.id) ?? []) owners[segment] = experimentId;
      const cfg: NamespaceConfig = { id: n.id, key: n.key, salt: n.salt, unitType: n.unitType, segments: n.segments, owners };
      namespacesById.set(n.id, cfg);
      namespaces.set(n.key, cfg);
    }
    const byKey = new Map<string, ExperimentConfig>();
    const sorted: ExperimentConfig[] = [];
    for (const e of s.experiments) {
      // An experiment of a hash version this server cannot compute (made by a newer server) is
      // not served at all: answering it with another version's formulas would move its units.
      if (!(HASH_VERSIONS as readonly number[]).includes(e.hashVersion)) {
        this.log(`experiment "${e.key}" uses hash version ${e.hashVersion}, which this server cannot evaluate: not serving it`);
        continue;
      }
      const cfg = buildExperimentConfig({
        id: e.id,
        key: e.key,
        salt: e.salt,
        unitType: e.unitType,
        hashVersion: e.hashVersion,
        variants: e.variants.map((v) => ({ id: v.id, key: v.key, weight: v.weight, params: v.params })),
        rollout: e.rollout,
        status: e.status,
        defaultVariantKey: e.defaultVariant ?? undefined,
        winnerKey: e.winner ?? undefined,
        tags: e.tags,
        namespace: e.namespaceId === null ? undefined : namespacesById.get(e.namespaceId),
        overrideCount: e.overrideCount,
        cacheGeneration: e.cacheGeneration,
        version: e.version,
      });
      byKey.set(e.key, cfg);
      sorted.push(cfg);
    }
    this.byKey = byKey;
    this.sorted = sorted;
    this.namespaces = namespaces;
    this.epoch = s.epoch;
  }
}
