import {
  buildExperimentConfig,
  buildNamespaceConfig,
  type ExperimentConfig,
  type HoldoutConfig,
  holdoutCovers,
  type NamespaceConfig,
} from "../engine/experiment-config.js";
import type { CacheTrust } from "../cache/assignment-cache.js";
import { type Condition, compileCondition } from "../engine/condition.js";
import { requireHashVersion, UnknownHashVersionError } from "../engine/hash.js";
import { CONFIG_CHANNEL, parseConfigChange } from "../store/config-change.js";
import type { ConfigSnapshot } from "../store/config-snapshot-store.js";
import type { Notifications } from "../store/database.js";
import { CACHE_TRUST_MS, DEFAULT_CONFIG_CHECK_MS } from "../server-defaults.js";

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
  /** The served experiment with this id (namespaces name their segments' owners by id). */
  byId(id: number): ExperimentConfig | undefined;
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
 *
 * It is also the CacheTrust of this server (SPEC: once a change of stored values has returned,
 * other servers stop answering the old value within 1 s). By construction:
 * - a NOTIFY names the experiments whose stored values changed: from the moment it arrives, their
 *   cached values are not answered until a configuration at least that new (with their new cache
 *   generations) is loaded; a NOTIFY that names none it cannot read withdraws trust from all;
 * - every `checkIntervalMs` the epoch is read on the listening connection; an epoch higher than the
 *   one loaded that no NOTIFY announced (a notification missed) withdraws trust from every
 *   experiment until it is loaded;
 * - caches are trusted only for CACHE_TRUST_MS after the start of the last successful epoch check or
 *   load: a change committed before that start is known (loaded, or trust withdrawn), so when the
 *   registry cannot read the epoch (listening connection lost, database unreachable, the process
 *   starved), every cached value stops being answered at most CACHE_TRUST_MS after any change.
 */
export class ConfigRegistry implements ConfigView, CacheTrust {
  private byKey = new Map<string, ExperimentConfig>();
  private byIds = new Map<number, ExperimentConfig>();
  private sorted: ExperimentConfig[] = [];
  private namespaces = new Map<string, NamespaceConfig>();
  /** Targeting conditions compiled, by source: each is compiled once, not at every reload. */
  private conditions = new Map<string, Condition>();
  private epoch = -1n;
  /** The highest epoch known to exist: loaded, announced by a NOTIFY, or seen by a check. */
  private known = -1n;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  /** performance.now() at the start of the last successful epoch check or load. */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** experiment id -> the epoch that must be loaded before its cached values are trusted again. */
  private readonly changedValues = new Map<number, bigint>();
  /** No cached value is trusted until this epoch is loaded. */
  private allChangedThrough = -1n;
  /** Epochs above the loaded one that a NOTIFY announced (and whose changes are marked above). */
  private readonly announced = new Set<bigint>();
  private revocations = 0;
  private checking = false;
  private lapseLogged = false;

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

  byId(id: number): ExperimentConfig | undefined {
    return this.byIds.get(id);
  }

  /** Every namespace served, sorted by key. */
  allNamespaces(): readonly NamespaceConfig[] {
    return [...this.namespaces.values()];
  }

  namespace(key: string): NamespaceConfig | undefined {
    return this.namespaces.get(key);
  }

  get currentEpoch(): bigint {
    return this.epoch;
  }

  /**
   * The least configuration epoch a read replica must have replayed for the stored values it
   * answers to be as fresh as this server's caches may be (see ReplicaReads): every change of
   * stored values (overrides, erasures, overwriting imports) raises the epoch in its own
   * transaction, so a replica at this epoch holds every such change this server knows of, and
   * changes this server does not know of yet are at most CACHE_TRUST_MS old. Undefined while
   * changes are not confirmed (as for the caches): then only the primary may answer.
   */
  replicaEpoch(): bigint | undefined {
    if (performance.now() - this.confirmedAt > CACHE_TRUST_MS) return undefined;
    return this.known;
  }

  trusts(experiment: { readonly id: number; readonly key: string; readonly cacheGeneration: number }): boolean {
    if (performance.now() - this.confirmedAt > CACHE_TRUST_MS) {
      this.lapsed();
      return false;
    }
    if (this.allChangedThrough > this.epoch) return false;
    // A configuration of the experiment taken before a reload may name an older generation.
    if (this.byKey.get(experiment.key)?.cacheGeneration !== experiment.cacheGeneration) return false;
    if (this.changedValues.size === 0) return true;
    const through = this.changedValues.get(experiment.id);
    return through === undefined || through <= this.epoch;
  }

  mark(): number {
    return this.revocations;
  }

  revokedSince(mark: number): boolean {
    return this.revocations !== mark || performance.now() - this.confirmedAt > CACHE_TRUST_MS;
  }

  private lapsed(): void {
    if (this.lapseLogged || this.confirmedAt === Number.NEGATIVE_INFINITY) return;
    this.lapseLogged = true;
    this.log(
      `configuration changes not confirmed for over ${CACHE_TRUST_MS} ms: stored values are read from the database, not the caches, until they are`,
    );
  }

  /** A NOTIFY: withdraws trust from what it names at once, then reloads. */
  private notified(payload: string): Promise<void> {
    const change = parseConfigChange(payload);
    if (change === undefined) {
      this.log(`unreadable configuration notification ${JSON.stringify(payload.slice(0, 64))}: reloading`);
      return this.refresh();
    }
    if (change.epoch > this.known) this.known = change.epoch;
    if (change.epoch <= this.epoch) return Promise.resolve();
    this.announced.add(change.epoch);
    if (change.valuesChanged === "all") {
      if (change.epoch > this.allChangedThrough) this.allChangedThrough = change.epoch;
      this.revocations++;
    } else if (change.valuesChanged.length > 0) {
      for (const id of change.valuesChanged) {
        const through = this.changedValues.get(id);
        if (through === undefined || through < change.epoch) this.changedValues.set(id, change.epoch);
      }
      this.revocations++;
    }
    return this.refresh();
  }

  /** The periodic check: reads the epoch; one above the loaded one that no NOTIFY announced
   * withdraws trust from every cache until it is loaded. */
  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const began = performance.now();
      const e = await this.source.configEpoch();
      if (e > this.known) this.known = e;
      if (e > this.epoch) {
        let announced = e - this.epoch <= BigInt(this.announced.size);
        for (let x = this.epoch + 1n; announced && x <= e; x++) announced = this.announced.has(x);
        if (!announced && e > this.allChangedThrough) {
          this.allChangedThrough = e;
          this.revocations++;
        }
        this.refresh().catch((err: Error) => this.log(`config refresh failed: ${err.message}`));
      }
      this.confirmed(began);
    } finally {
      this.checking = false;
    }
  }

  private confirmed(began: number): void {
    if (began <= this.confirmedAt) return;
    this.confirmedAt = began;
    if (this.lapseLogged) {
      this.lapseLogged = false;
      this.log("configuration changes confirmed again: caches answer again");
    }
  }

  /** Loads the configuration, then follows changes: by NOTIFY where the database has it, and by
   * a check of the epoch every `checkIntervalMs`. */
  async start(checkIntervalMs = DEFAULT_CONFIG_CHECK_MS): Promise<void> {
    const failed = (e: Error) => this.log(`config refresh failed: ${e.message}`);
    if (this.notifications) {
      await this.notifications.listen(
        CONFIG_CHANNEL,
        (payload) => void this.notified(payload).catch(failed),
        () => this.refresh().catch(failed),
      );
    } else {
      this.log(`the database has no LISTEN/NOTIFY: changes made through other servers are served within ${checkIntervalMs} ms`);
    }
    await this.refresh();
    if (checkIntervalMs * 2 > CACHE_TRUST_MS) {
      this.log(
        `configuration checked every ${checkIntervalMs} ms: cached stored values are trusted for ${CACHE_TRUST_MS} ms after a check, so between checks they are read from the database`,
      );
    }
    this.timer = setInterval(() => {
      this.check().catch((e) => this.log(`config epoch check failed: ${e.message}`));
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
          const began = performance.now();
          this.apply(await this.source.loadConfig());
          this.confirmed(began);
        } while (this.again);
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  /** The compiled condition of `source` (the last load's when it had it), kept in `into`. One that
   * no longer compiles (saved by a server whose CEL accepted it) is never true: the experiment's
   * stored units keep their variant, and nobody new is enrolled until the condition is fixed. */
  private condition(key: string, source: string, into: Map<string, Condition>): Condition {
    let c = into.get(source) ?? this.conditions.get(source);
    if (!c) {
      try {
        c = compileCondition("condition", source);
      } catch (err) {
        this.log(`experiment "${key}": targeting condition does not compile (${(err as Error).message}): it is never true`);
        c = { source, test: () => false };
      }
    }
    into.set(source, c);
    return c;
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
        const cfg = buildNamespaceConfig({ ...n, defaultParams: n.defaultParams ?? undefined, allocations: s.segments.get(n.id) ?? [] });
        namespacesById.set(n.id, cfg);
        namespaces.set(n.key, cfg);
      } catch (err) {
        notServed(err);
        unservedNamespaces.add(n.id);
      }
    }
    // Holdouts a server cannot compute (a newer hash version) hold nobody out here: logged.
    const holdouts: Array<HoldoutConfig & { unitType: string; tags: readonly string[] }> = [];
    for (const h of s.holdouts) {
      try {
        holdouts.push({
          id: h.id,
          key: h.key,
          salt: h.salt,
          hashVersion: requireHashVersion(`holdout "${h.key}"`, h.hashVersion),
          share: h.share,
          unitType: h.unitType,
          tags: h.tags,
        });
      } catch (err) {
        notServed(err);
      }
    }
    const byKey = new Map<string, ExperimentConfig>();
    const byIds = new Map<number, ExperimentConfig>();
    const sorted: ExperimentConfig[] = [];
    const conditions = new Map<string, Condition>();
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
          condition: e.condition === "" ? undefined : this.condition(e.key, e.condition, conditions),
          holdouts: holdouts.filter((h) => holdoutCovers(h, e)),
          overrideCount: e.overrideCount,
          cacheGeneration: e.cacheGeneration,
          version: e.version,
        });
      } catch (err) {
        notServed(err);
        continue;
      }
      byKey.set(e.key, cfg);
      byIds.set(e.id, cfg);
      sorted.push(cfg);
    }
    this.byKey = byKey;
    this.byIds = byIds;
    this.sorted = sorted;
    this.namespaces = namespaces;
    this.conditions = conditions;
    this.epoch = s.epoch;
    if (s.epoch > this.known) this.known = s.epoch;
    for (const [id, through] of this.changedValues) if (through <= s.epoch) this.changedValues.delete(id);
    for (const x of this.announced) if (x <= s.epoch) this.announced.delete(x);
  }
}
