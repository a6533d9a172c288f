import { buildExperimentConfig, buildNamespaceConfig, type ExperimentConfig, type NamespaceConfig } from "../engine/experiment-config.js";
import { UnknownHashVersionError } from "../engine/hash.js";
import { CONFIG_CHANNEL } from "../store/config-change.js";
import type { ConfigSnapshot } from "../store/config-snapshot-store.js";
import type { Notifications } from "../store/database.js";
import { DEFAULT_CONFIG_CHECK_MS } from "../server-defaults.js";

/** Where the registry reads the configuration: the database (ConfigSnapshotStore). */
export interface ConfigSource {
  /** The whole configuration, consistent. */
  loadConfig(): Promise<ConfigSnapshot>;
  /** The epoch the configuration is at now (cheap). */
  configEpoch(): Promise<bigint>;
}

/** What evaluations read: experiments and namespaces by key. */
export interface ConfigView {
  get(key: string): ExperimentConfig | undefined;
  /** All experiments, sorted by key. */
  all(): readonly ExperimentConfig[];
  namespace(key: string): NamespaceConfig | undefined;
  /** Resolves once a load that started after the call has finished (see ConfigRegistry.refresh). */
  refresh(): Promise<void>;
}

/**
 * The experiment configuration every evaluation reads, held in memory so that an assignment never
 * waits on a configuration query. Refreshed when the database announces a change (LISTEN/NOTIFY),
 * by a periodic epoch check as a fallback for missed notifications, and synchronously by the
 * admin calls of this process before they return. Archived experiments and namespaces are not
 * served (an archived experiment answers UNKNOWN_EXPERIMENT). Experiments and namespaces of a hash version
 * this server cannot compute (made by a newer one) are not served at all: answering them with
 * another version's formulas would move their units.
 */
export class ConfigRegistry implements ConfigView {
  private byKey = new Map<string, ExperimentConfig>();
  private sorted: ExperimentConfig[] = [];
  private namespaces = new Map<string, NamespaceConfig>();
  private epoch = -1n;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: ConfigSource,
    private readonly notifications: Notifications | null,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  get(key: string): ExperimentConfig | undefined {
    return this.byKey.get(key);
  }

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
  async start(checkIntervalMs = DEFAULT_CONFIG_CHECK_MS): Promise<void> {
    const failed = (e: Error) => this.log(`config refresh failed: ${e.message}`);
    if (this.notifications) {
      await this.notifications.listen(
        CONFIG_CHANNEL,
        (payload) => {
          if (payload === "" || BigInt(payload) > this.epoch) this.refresh().catch(failed);
        },
        () => this.refresh().catch(failed),
      );
    } else {
      this.log(`the database has no LISTEN/NOTIFY: changes made through other servers are served within ${checkIntervalMs} ms`);
    }
    await this.refresh();
    this.timer = setInterval(() => {
      this.source
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
          this.apply(await this.source.loadConfig());
        } while (this.again);
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  private apply(s: ConfigSnapshot): void {
    if (s.epoch < this.epoch) return;
    const notServed = (err: unknown) => {
      if (!(err instanceof UnknownHashVersionError)) throw err;
      this.log(`${err.message}: not serving it`);
    };
    const namespacesById = new Map<number, NamespaceConfig>();
    const unservedNamespaces = new Set<number>();
    const namespaces = new Map<string, NamespaceConfig>();
    for (const n of s.namespaces) {
      // Archived: not served, nor any experiment in it (they are all archived too).
      if (n.archivedAt) {
        unservedNamespaces.add(n.id);
        continue;
      }
      try {
        const cfg = buildNamespaceConfig({ ...n, allocations: s.segments.get(n.id) ?? [] });
        namespacesById.set(n.id, cfg);
        namespaces.set(n.key, cfg);
      } catch (err) {
        notServed(err);
        unservedNamespaces.add(n.id);
      }
    }
    const byKey = new Map<string, ExperimentConfig>();
    const sorted: ExperimentConfig[] = [];
    for (const e of s.experiments) {
      // Archived: unknown to every assignment path (UNKNOWN_EXPERIMENT).
      if (e.archivedAt) continue;
      if (e.namespaceId !== null && unservedNamespaces.has(e.namespaceId)) {
        this.log(`experiment "${e.key}" is in a namespace this server cannot evaluate: not serving it`);
        continue;
      }
      let cfg: ExperimentConfig;
      try {
        cfg = buildExperimentConfig({
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
      } catch (err) {
        notServed(err);
        continue;
      }
      byKey.set(e.key, cfg);
      sorted.push(cfg);
    }
    this.byKey = byKey;
    this.sorted = sorted;
    this.namespaces = namespaces;
    this.epoch = s.epoch;
  }
}
