/**
 * Small in-memory implementations of the interfaces the Assigner and the ConfigRegistry depend
 * on, for unit tests of those classes alone (the integration suites use the real PostgreSQL and
 * Redis). Each keeps what it was given and records what it was asked, so tests can say both what
 * was answered and which layer was touched.
 */
import type { AssignmentCache, CacheCell, InProcessCache } from "../../src/cache/assignment-cache.js";
import type { StoredAssignment } from "../../src/engine/evaluate.js";
import type { ConfigSource } from "../../src/service/config-registry.js";
import type { AssignmentStorage, CellKey, InsertOutcome, NewAssignment } from "../../src/store/assignment-store.js";
import type { ConfigSnapshot } from "../../src/store/config-snapshot-store.js";
import type { Notifications } from "../../src/store/database.js";

const key = (experimentId: number, unitId: string) => `${experimentId}/${unitId}`;

/** PostgreSQL's assignments table: one row per cell, the first insert wins. */
export class FakeStorage implements AssignmentStorage {
  readonly rows = new Map<string, StoredAssignment>();
  readonly reads: CellKey[][] = [];
  readonly inserts: NewAssignment[][] = [];
  /** Makes every later call reject with it (a database outage), until cleared. */
  failure: unknown;
  /** Rows another writer stores right before the next insert runs (a lost race). */
  racers: NewAssignment[] = [];

  put(experimentId: number, unitId: string, value: StoredAssignment): void {
    this.rows.set(key(experimentId, unitId), value);
  }

  get(experimentId: number, unitId: string): StoredAssignment | undefined {
    return this.rows.get(key(experimentId, unitId));
  }

  async read(cells: readonly CellKey[]): Promise<(StoredAssignment | undefined)[]> {
    this.reads.push([...cells]);
    if (this.failure !== undefined) throw this.failure;
    return cells.map((c) => this.get(c.experimentId, c.unitId));
  }

  async insert(rows: NewAssignment[]): Promise<InsertOutcome[]> {
    this.inserts.push([...rows]);
    if (this.failure !== undefined) throw this.failure;
    for (const r of this.racers.splice(0)) this.put(r.experimentId, r.unitId, { variantId: r.variantId, source: r.source });
    return rows.map((r) => {
      const existing = this.get(r.experimentId, r.unitId);
      if (existing) return { stored: existing, won: false };
      const value = { variantId: r.variantId, source: r.source };
      this.put(r.experimentId, r.unitId, value);
      return { stored: value, won: true };
    });
  }
}

const cacheKey = (c: CacheCell) => `${c.experimentId}.${c.generation}/${c.unitId}`;

/** The in-process layer. */
export class FakeMemory implements InProcessCache {
  readonly entries = new Map<string, StoredAssignment>();
  lookups = 0;

  lookup(experimentId: number, generation: number, unitId: string): StoredAssignment | undefined {
    this.lookups++;
    return this.entries.get(cacheKey({ experimentId, generation, unitId }));
  }

  setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): void {
    cells.forEach((c, i) => this.entries.set(cacheKey(c), values[i]!));
  }
}

/** Redis. `down`: every read misses and nothing is written, as RedisCache behaves when Redis fails;
 * `hung`: writes never finish. */
export class FakeRedis implements AssignmentCache {
  readonly entries = new Map<string, StoredAssignment>();
  readonly gets: CacheCell[][] = [];
  down = false;
  hung = false;

  async getMany(cells: readonly CacheCell[]): Promise<(StoredAssignment | undefined)[]> {
    this.gets.push([...cells]);
    return cells.map((c) => (this.down ? undefined : this.entries.get(cacheKey(c))));
  }

  async setMany(cells: readonly CacheCell[], values: readonly StoredAssignment[]): Promise<void> {
    if (this.hung) return new Promise<void>(() => {});
    if (this.down) return;
    cells.forEach((c, i) => this.entries.set(cacheKey(c), values[i]!));
  }

  async close(): Promise<void> {}

  has(experimentId: number, generation: number, unitId: string): boolean {
    return this.entries.has(cacheKey({ experimentId, generation, unitId }));
  }
}

/** The configuration in the database: tests replace `snapshot`, and may hold a load open. */
export class FakeConfigSource implements ConfigSource {
  loads = 0;
  failure: unknown;
  /** While set, loads wait for it. */
  gate: Promise<void> | undefined;

  constructor(public snapshot: ConfigSnapshot) {}

  async loadConfig(): Promise<ConfigSnapshot> {
    this.loads++;
    const taken = this.snapshot; // what the database held when the load began
    if (this.gate) await this.gate;
    if (this.failure !== undefined) throw this.failure;
    return taken;
  }

  /** While set, epoch checks fail with it. */
  epochFailure: unknown;

  async configEpoch(): Promise<bigint> {
    if (this.epochFailure !== undefined) throw this.epochFailure;
    return this.snapshot.epoch;
  }
}

/** LISTEN/NOTIFY: `notify` and `reconnect` call what the listener registered. */
export class FakeNotifications implements Notifications {
  readonly channels: string[] = [];
  private onNotify: (payload: string) => void = () => {};
  private onReconnect: () => void = () => {};

  async listen(channel: string, onNotify: (payload: string) => void, onReconnect: () => void): Promise<void> {
    this.channels.push(channel);
    this.onNotify = onNotify;
    this.onReconnect = onReconnect;
  }

  notify(payload: string): void {
    this.onNotify(payload);
  }

  /** Not used: the registry reads the epoch through its ConfigSource. */
  async query<R>(): Promise<{ rows: R[]; rowCount: number }> {
    throw new Error("FakeNotifications.query is not implemented");
  }

  reconnect(): void {
    this.onReconnect();
  }
}
