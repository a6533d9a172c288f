/**
 * ConfigRegistry alone, against a fake configuration source and fake LISTEN/NOTIFY: what it
 * serves after a refresh, how concurrent refreshes share loads, what it refuses to serve, and
 * which notifications make it reload.
 */
import { describe, expect, it } from "vitest";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { CACHE_TRUST_MS } from "../../src/server-defaults.js";
import { ConfigRegistry } from "../../src/service/config-registry.js";
import { CONFIG_CHANNEL } from "../../src/store/config-change.js";
import type { ExperimentRecord, NamespaceRecord } from "../../src/store/config-records.js";
import type { ConfigSnapshot } from "../../src/store/config-snapshot-store.js";
import { FakeConfigSource, FakeNotifications } from "./fakes.js";

const at = new Date(0);
function experiment(id: number, key: string, o: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    id,
    key,
    salt: key,
    unitType: "user_id",
    hashVersion: 1,
    variants: [
      { id: 0, key: "a", weight: 5000 },
      { id: 1, key: "b", weight: 5000 },
    ],
    rollout: 10_000,
    status: ExperimentStatus.RUNNING,
    defaultVariant: null,
    winner: null,
    tags: [],
    description: "",
    condition: "",
    namespaceId: null,
    namespaceKey: null,
    segmentCount: 0,
    overrideCount: 0,
    cacheGeneration: 0,
    version: 1n,
    createdAt: at,
    updatedAt: at,
    archivedAt: null,
    ...o,
  };
}
function namespace(id: number, key: string, o: Partial<NamespaceRecord> = {}): NamespaceRecord {
  return {
    id,
    key,
    salt: `${key}-salt`,
    unitType: "user_id",
    hashVersion: 1,
    segments: 4,
    defaultParams: null,
    version: 1n,
    createdAt: at,
    archivedAt: null,
    allocations: new Map(),
    ...o,
  };
}
const snapshot = (epoch: bigint, o: Partial<ConfigSnapshot> = {}): ConfigSnapshot => ({
  epoch,
  experiments: [],
  namespaces: [],
  segments: new Map(),
  holdouts: [],
  ...o,
});

function registry(first: ConfigSnapshot, notifications: FakeNotifications | null = null) {
  const source = new FakeConfigSource(first);
  const logs: string[] = [];
  return { source, logs, registry: new ConfigRegistry(source, notifications, (m) => logs.push(m)) };
}

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe("ConfigRegistry.refresh", () => {
  it("serves what it loaded: experiments by key and sorted, namespaces with their segment owners", async () => {
    const { registry: r } = registry(
      snapshot(3n, {
        experiments: [experiment(2, "zeta", { namespaceId: 7, namespaceKey: "ns" }), experiment(1, "alpha", { rollout: 2500 })],
        namespaces: [namespace(7, "ns")],
        segments: new Map([
          [
            7,
            [
              [1, 2],
              [3, 2],
            ],
          ],
        ]),
      }),
    );
    await r.refresh();
    expect(r.currentEpoch).toBe(3n);
    expect(r.all().map((e) => e.key)).toEqual(["zeta", "alpha"]);
    expect(r.get("alpha")?.rollout).toBe(2500);
    expect(r.get("missing")).toBeUndefined();
    expect(Array.from(r.namespace("ns")!.owners)).toEqual([0, 2, 0, 2]);
    expect(r.get("zeta")?.namespace).toBe(r.namespace("ns"));
  });

  it.each([
    ["one call", 1, 1],
    ["two calls at once: one load, and one more for the second", 2, 2],
    ["five calls at once: still two loads", 5, 2],
  ])("%s", async (_name, calls, loads) => {
    const { source, registry: r } = registry(snapshot(1n));
    const g = gate();
    source.gate = g.promise;
    const done = Array.from({ length: calls }, () => r.refresh());
    g.open();
    await Promise.all(done);
    expect(source.loads).toBe(loads);
  });

  it("a call made while a load runs resolves only after a load that began after it", async () => {
    const { source, registry: r } = registry(snapshot(1n, { experiments: [experiment(1, "old")] }));
    const g = gate();
    source.gate = g.promise;
    const first = r.refresh();
    source.snapshot = snapshot(2n, { experiments: [experiment(1, "old"), experiment(2, "new")] });
    const second = r.refresh();
    g.open();
    await second;
    expect(r.get("new")).toBeDefined();
    await first;
  });

  it("never goes back to an older epoch", async () => {
    const { source, registry: r } = registry(snapshot(5n, { experiments: [experiment(1, "kept")] }));
    await r.refresh();
    source.snapshot = snapshot(4n);
    await r.refresh();
    expect([r.currentEpoch, r.get("kept")?.key]).toEqual([5n, "kept"]);
  });

  it("a failed load keeps serving the last configuration; the next one recovers", async () => {
    const { source, registry: r } = registry(snapshot(1n, { experiments: [experiment(1, "a")] }));
    await r.refresh();
    source.failure = new Error("database down");
    source.snapshot = snapshot(2n, { experiments: [experiment(1, "a"), experiment(2, "b")] });
    await expect(r.refresh()).rejects.toThrow("database down");
    expect([r.get("a")?.key, r.get("b")]).toEqual(["a", undefined]);
    source.failure = undefined;
    await r.refresh();
    expect(r.get("b")?.key).toBe("b");
  });

  it("does not serve experiments or namespaces of an unknown hash version, nor the experiments in such a namespace", async () => {
    const { registry: r, logs } = registry(
      snapshot(1n, {
        experiments: [
          experiment(1, "current"),
          experiment(2, "future", { hashVersion: 2 }),
          experiment(3, "inside", { namespaceId: 9, namespaceKey: "future-ns" }),
        ],
        namespaces: [namespace(9, "future-ns", { hashVersion: 2 })],
      }),
    );
    await r.refresh();
    expect(r.all().map((e) => e.key)).toEqual(["current"]);
    expect(r.namespace("future-ns")).toBeUndefined();
    expect(logs).toEqual([
      'namespace "future-ns" uses hash version 2, which this server cannot evaluate (it knows 1): not serving it',
      'experiment "future" uses hash version 2, which this server cannot evaluate (it knows 1): not serving it',
      'experiment "inside" is in a namespace this server cannot evaluate: not serving it',
    ]);
  });

  it("does not serve archived experiments or namespaces (they answer UNKNOWN_EXPERIMENT), nor log them", async () => {
    const { registry: r, logs } = registry(
      snapshot(1n, {
        experiments: [
          experiment(1, "live"),
          experiment(2, "retired", { archivedAt: at, status: ExperimentStatus.STOPPED }),
          experiment(3, "retired-in-ns", { archivedAt: at, namespaceId: 9, namespaceKey: "old-ns" }),
        ],
        namespaces: [namespace(9, "old-ns", { archivedAt: at }), namespace(10, "live-ns")],
      }),
    );
    await r.refresh();
    expect(r.all().map((e) => e.key)).toEqual(["live"]);
    expect([r.get("retired"), r.get("retired-in-ns"), r.namespace("old-ns")]).toEqual([undefined, undefined, undefined]);
    expect(r.namespace("live-ns")).toBeDefined();
    expect(logs).toEqual([]);
  });
});

describe("ConfigRegistry.start", () => {
  it("listens on the configuration channel; a newer epoch or a reconnect reloads, an old one does not", async () => {
    const notifications = new FakeNotifications();
    const { source, registry: r } = registry(snapshot(2n), notifications);
    await r.start(60_000);
    try {
      expect([notifications.channels, source.loads]).toEqual([[CONFIG_CHANNEL], 1]);
      notifications.notify("2");
      notifications.notify("1");
      await r.refresh(); // settles whatever a notification started
      expect(source.loads).toBe(2);
      source.snapshot = snapshot(3n, { experiments: [experiment(1, "notified")] });
      notifications.notify("3");
      await new Promise((resolve) => setImmediate(resolve));
      await r.refresh();
      expect(r.get("notified")).toBeDefined();
      const before = source.loads;
      notifications.reconnect();
      await new Promise((resolve) => setImmediate(resolve));
      expect(source.loads).toBeGreaterThan(before);
    } finally {
      r.stop();
    }
  });

  it("without LISTEN/NOTIFY it says so, and still loads", async () => {
    const { source, registry: r, logs } = registry(snapshot(1n));
    await r.start(250);
    r.stop();
    expect(source.loads).toBe(1);
    expect(logs).toEqual(["the database has no LISTEN/NOTIFY: changes made through other servers are served within 250 ms"]);
  });
});

describe("ConfigRegistry as the CacheTrust (SPEC: a changed stored value stops being answered everywhere within 1 s)", () => {
  const twoExperiments = (epoch: bigint, generationOfX: number) =>
    snapshot(epoch, { experiments: [experiment(1, "x", { cacheGeneration: generationOfX }), experiment(2, "y")] });
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it("a NOTIFY naming an experiment withdraws trust from its caches at once, before the reload; the reload restores it for the new generation only", async () => {
    const notifications = new FakeNotifications();
    const { source, registry: r } = registry(twoExperiments(1n, 0), notifications);
    await r.start(60_000);
    try {
      const oldX = r.get("x")!;
      expect([r.trusts(oldX), r.trusts(r.get("y")!)]).toEqual([true, true]);
      const mark = r.mark();
      const g = gate();
      source.gate = g.promise;
      source.snapshot = twoExperiments(2n, 1);
      notifications.notify("2:1");
      // The reload is still waiting: x is not trusted, y still is.
      expect([r.trusts(oldX), r.trusts(r.get("y")!), r.revokedSince(mark)]).toEqual([false, true, true]);
      g.open();
      await settle();
      await r.refresh();
      expect(r.get("x")!.cacheGeneration).toBe(1);
      expect([r.trusts(r.get("x")!), r.trusts(oldX)]).toEqual([true, false]);
    } finally {
      r.stop();
    }
  });

  it("a NOTIFY of a configuration change alone keeps trust; one that names no list (an older server's) withdraws it from all until loaded", async () => {
    const notifications = new FakeNotifications();
    const { source, registry: r } = registry(twoExperiments(1n, 0), notifications);
    await r.start(60_000);
    try {
      const g = gate();
      source.gate = g.promise;
      source.snapshot = twoExperiments(2n, 0);
      notifications.notify("2:");
      expect([r.trusts(r.get("x")!), r.trusts(r.get("y")!)]).toEqual([true, true]);
      source.snapshot = twoExperiments(3n, 0);
      notifications.notify("3");
      expect([r.trusts(r.get("x")!), r.trusts(r.get("y")!)]).toEqual([false, false]);
      g.open();
      await settle();
      await r.refresh();
      expect(r.currentEpoch).toBe(3n);
      expect([r.trusts(r.get("x")!), r.trusts(r.get("y")!)]).toEqual([true, true]);
    } finally {
      r.stop();
    }
  });

  it("an epoch check finding a change no NOTIFY announced withdraws trust from every experiment until it is loaded", async () => {
    const { source, registry: r } = registry(twoExperiments(1n, 0), new FakeNotifications());
    await r.start(20);
    try {
      const g = gate();
      source.gate = g.promise;
      source.snapshot = twoExperiments(2n, 1); // committed, but its NOTIFY was lost
      const noticed = await eventually(() => !r.trusts(r.get("y")!), 2_000);
      expect(noticed).toBe(true);
      expect(r.trusts(r.get("x")!)).toBe(false);
      g.open();
      expect(await eventually(() => r.currentEpoch === 2n && r.trusts(r.get("y")!) && r.trusts(r.get("x")!), 2_000)).toBe(true);
    } finally {
      r.stop();
    }
  });

  it(`while epoch checks fail (listening connection down), caches stop being trusted ${CACHE_TRUST_MS} ms after the last good one, and are trusted again after the next`, async () => {
    const { source, registry: r, logs } = registry(twoExperiments(1n, 0), new FakeNotifications());
    await r.start(20);
    try {
      expect(r.trusts(r.get("x")!)).toBe(true);
      const mark = r.mark();
      source.epochFailure = new Error("listening connection down");
      expect(await eventually(() => !r.trusts(r.get("x")!), CACHE_TRUST_MS + 2_000)).toBe(true);
      expect(r.revokedSince(mark)).toBe(true);
      source.epochFailure = undefined;
      expect(await eventually(() => r.trusts(r.get("x")!), 2_000)).toBe(true);
      expect(logs.some((l) => l.includes("not confirmed"))).toBe(true);
      expect(logs.some((l) => l.includes("confirmed again"))).toBe(true);
    } finally {
      r.stop();
    }
  });
});

/** Polls a condition every 10 ms for at most `ms`. */
async function eventually(probe: () => boolean, ms: number): Promise<boolean> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    if (probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return probe();
}
