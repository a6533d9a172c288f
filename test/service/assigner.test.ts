/**
 * The Assigner alone (the hot path), against in-memory fakes of PostgreSQL, Redis and the
 * in-process cache: which layer answers, what is written where, races, repeats, dry runs, outages.
 * Expected variants come from the reference hash (test/engine/helpers.ts), not from the engine.
 */
import { describe, expect, it } from "vitest";
import type { CacheCell, CacheTrust } from "../../src/cache/assignment-cache.js";
import { ExperimentStatus, Layer, Reason, Source } from "../../gen/ts/assignment/v1/types_pb.js";
import type { ExperimentConfig } from "../../src/engine/experiment-config.js";
import { Code, ServiceError } from "../../src/errors.js";
import { Assigner, type AssignOptionsLike, type Cell } from "../../src/service/assigner.js";
import { classicWalk, makeExperiment, referenceH, variantId } from "../engine/helpers.js";
import { FakeMemory, FakeRedis, FakeStorage } from "./fakes.js";

const running = makeExperiment({ id: 1, key: "running", weights: [5000, 5000], keys: ["a", "b"] });
const noRollout = makeExperiment({ id: 2, key: "closed", rollout: 0, keys: ["a", "b"] });
const draft = makeExperiment({ id: 3, key: "draft", status: ExperimentStatus.DRAFT, keys: ["a", "b"] });
const draftWithOverride = makeExperiment({ id: 4, key: "tried", status: ExperimentStatus.DRAFT, keys: ["a", "b"], overrideCount: 1 });

/** The variant id SPEC.md's hash gives `unit` (rollout 10000). */
const hashed = (unit: string, e: ExperimentConfig) => variantId(classicWalk(referenceH(`${unit}:${e.salt}`) % 10_000, e.weights));
/** The other variant of a two-variant experiment. */
const other = (id: number) => (id === variantId(0) ? variantId(1) : variantId(0));

const options = (o: Partial<AssignOptionsLike> = {}): AssignOptionsLike => ({ dryRun: false, allowUnstored: false, ...o });
const cell = (unitId: string, experiment: ExperimentConfig | undefined = running, unitType = "user_id"): Cell => ({
  experiment,
  unitId,
  unitType,
});

function world() {
  const storage = new FakeStorage();
  const memory = new FakeMemory();
  const redis = new FakeRedis();
  return { storage, memory, redis, assigner: new Assigner(storage, memory, redis) };
}
type World = ReturnType<typeof world>;

interface Expected {
  reason: Reason;
  /** Variant id, or undefined for no variant. */
  variant: number | undefined;
  stored: boolean;
  layer: Layer;
}

interface Case {
  name: string;
  given?: (w: World) => void;
  cells: Cell[];
  options?: Partial<AssignOptionsLike>;
  expected: (w: World) => Expected[];
  /** What else must hold afterwards. */
  after?: (w: World) => void;
}

const u = "unit-7";
const stored = (variant: number, source = Source.HASH) => ({ variantId: variant, source });

const cases: Case[] = [
  {
    name: "a new unit: NEW and stored, inserted once, then in memory and Redis",
    cells: [cell(u)],
    expected: () => [{ reason: Reason.NEW, variant: hashed(u, running), stored: true, layer: Layer.COMPUTED }],
    after: (w) => {
      expect(w.storage.inserts).toEqual([
        [{ experimentId: 1, unitId: u, variantId: hashed(u, running), version: 1n, source: Source.HASH }],
      ]);
      expect(w.storage.reads).toEqual([]);
      expect(w.memory.lookup(1, 0, u)).toEqual(stored(hashed(u, running)));
      expect(w.redis.has(1, 0, u)).toBe(true);
    },
  },
  {
    name: "a unit stored in PostgreSQL only: its stored variant, STICKY, then cached in memory and Redis",
    given: (w) => w.storage.put(1, u, stored(other(hashed(u, running)))),
    cells: [cell(u)],
    expected: () => [{ reason: Reason.STICKY, variant: other(hashed(u, running)), stored: true, layer: Layer.POSTGRES }],
    after: (w) => {
      expect(w.storage.get(1, u)).toEqual(stored(other(hashed(u, running))));
      expect(w.memory.lookup(1, 0, u)).toEqual(stored(other(hashed(u, running))));
      expect(w.redis.has(1, 0, u)).toBe(true);
    },
  },
  {
    name: "a unit in Redis: STICKY from Redis, copied into memory; PostgreSQL is not asked",
    given: (w) => w.redis.setMany([{ experimentId: 1, generation: 0, unitId: u }], [stored(variantId(1))]),
    cells: [cell(u)],
    expected: () => [{ reason: Reason.STICKY, variant: variantId(1), stored: true, layer: Layer.REDIS }],
    after: (w) => {
      expect([w.storage.reads, w.storage.inserts]).toEqual([[], []]);
      expect(w.memory.lookup(1, 0, u)).toEqual(stored(variantId(1)));
    },
  },
  {
    name: "a unit in memory: STICKY from memory; nothing else is asked",
    given: (w) => w.memory.setMany([{ experimentId: 1, generation: 0, unitId: u }], [stored(variantId(0))]),
    cells: [cell(u)],
    expected: () => [{ reason: Reason.STICKY, variant: variantId(0), stored: true, layer: Layer.MEMORY }],
    after: (w) => expect([w.redis.gets, w.storage.reads, w.storage.inserts]).toEqual([[], [], []]),
  },
  {
    name: "a lost insert race: another writer stored the unit first, and its variant is the answer (STICKY)",
    given: (w) => {
      w.storage.racers = [{ experimentId: 1, unitId: u, variantId: other(hashed(u, running)), version: 1n, source: Source.HASH }];
    },
    cells: [cell(u)],
    expected: () => [{ reason: Reason.STICKY, variant: other(hashed(u, running)), stored: true, layer: Layer.POSTGRES }],
    after: (w) => expect(w.memory.lookup(1, 0, u)).toEqual(stored(other(hashed(u, running)))),
  },
  {
    name: "a won race among several units: the winners NEW, the loser STICKY with the racer's variant",
    given: (w) => {
      w.storage.racers = [{ experimentId: 1, unitId: "u-2", variantId: other(hashed("u-2", running)), version: 1n, source: Source.HASH }];
    },
    cells: [cell("u-1"), cell("u-2"), cell("u-3")],
    expected: () => [
      { reason: Reason.NEW, variant: hashed("u-1", running), stored: true, layer: Layer.COMPUTED },
      { reason: Reason.STICKY, variant: other(hashed("u-2", running)), stored: true, layer: Layer.POSTGRES },
      { reason: Reason.NEW, variant: hashed("u-3", running), stored: true, layer: Layer.COMPUTED },
    ],
  },
  {
    name: "the same unit twice in a batch: inserted once, answered NEW at both positions",
    cells: [cell(u), cell("u-other"), cell(u)],
    expected: () => [
      { reason: Reason.NEW, variant: hashed(u, running), stored: true, layer: Layer.COMPUTED },
      { reason: Reason.NEW, variant: hashed("u-other", running), stored: true, layer: Layer.COMPUTED },
      { reason: Reason.NEW, variant: hashed(u, running), stored: true, layer: Layer.COMPUTED },
    ],
    after: (w) => expect(w.storage.inserts.flat().map((r) => r.unitId)).toEqual([u, "u-other"]),
  },
  {
    name: "a dry run of a new unit: the hashed variant, NEW but not stored; nothing written anywhere",
    cells: [cell(u)],
    options: { dryRun: true },
    expected: () => [{ reason: Reason.NEW, variant: hashed(u, running), stored: false, layer: Layer.COMPUTED }],
    after: (w) => {
      expect([w.storage.inserts, w.storage.rows.size, w.memory.entries.size, w.redis.entries.size]).toEqual([[], 0, 0, 0]);
      expect(w.storage.reads).toEqual([[{ experimentId: 1, unitId: u }]]);
    },
  },
  {
    name: "a dry run of a stored unit: STICKY, read from PostgreSQL (not inserted)",
    given: (w) => w.storage.put(1, u, stored(variantId(1))),
    cells: [cell(u)],
    options: { dryRun: true },
    expected: () => [{ reason: Reason.STICKY, variant: variantId(1), stored: true, layer: Layer.POSTGRES }],
    after: (w) => expect(w.storage.inserts).toEqual([]),
  },
  {
    name: "PostgreSQL unavailable with allow_unstored: the hashed variant, not stored; nothing cached",
    given: (w) => (w.storage.failure = new ServiceError(Code.Unavailable, "database unavailable: down")),
    cells: [cell(u), cell("u-2")],
    options: { allowUnstored: true },
    expected: () => [
      { reason: Reason.NEW, variant: hashed(u, running), stored: false, layer: Layer.COMPUTED },
      { reason: Reason.NEW, variant: hashed("u-2", running), stored: false, layer: Layer.COMPUTED },
    ],
    after: (w) => expect([w.memory.entries.size, w.redis.entries.size]).toEqual([0, 0]),
  },
  {
    name: "Redis down: every read misses, PostgreSQL answers as usual, memory is still filled",
    given: (w) => {
      w.redis.down = true;
      w.storage.put(1, "u-stored", stored(variantId(1)));
    },
    cells: [cell(u), cell("u-stored")],
    expected: () => [
      { reason: Reason.NEW, variant: hashed(u, running), stored: true, layer: Layer.COMPUTED },
      { reason: Reason.STICKY, variant: variantId(1), stored: true, layer: Layer.POSTGRES },
    ],
    after: (w) => expect([w.memory.entries.size, w.redis.entries.size]).toEqual([2, 0]),
  },
  {
    name: "outside the rollout: the default variant, NOT_IN_ROLLOUT; read (the unit may be stored), never inserted",
    cells: [cell(u, noRollout)],
    expected: () => [{ reason: Reason.NOT_IN_ROLLOUT, variant: variantId(0), stored: false, layer: Layer.COMPUTED }],
    after: (w) => expect([w.storage.reads.length, w.storage.inserts]).toEqual([1, []]),
  },
  {
    name: "a DRAFT experiment without overrides: answered from configuration alone",
    cells: [cell(u, draft)],
    expected: () => [{ reason: Reason.NOT_RUNNING, variant: variantId(0), stored: false, layer: Layer.MEMORY }],
    after: (w) => expect([w.memory.lookups, w.redis.gets, w.storage.reads, w.storage.inserts]).toEqual([0, [], [], []]),
  },
  {
    name: "an override of a DRAFT experiment: OVERRIDE (overrides work in every status)",
    given: (w) => w.storage.put(4, u, stored(variantId(1), Source.OVERRIDE)),
    cells: [cell(u, draftWithOverride), cell("u-plain", draftWithOverride)],
    expected: () => [
      { reason: Reason.OVERRIDE, variant: variantId(1), stored: true, layer: Layer.POSTGRES },
      { reason: Reason.NOT_RUNNING, variant: variantId(0), stored: false, layer: Layer.COMPUTED },
    ],
  },
  {
    name: "unknown experiment, invalid unit, other unit type: per-cell reasons without any I/O",
    cells: [{ experiment: undefined, unitId: u, unitType: "user_id" }, cell(""), cell(u, running, "device_id")],
    expected: () => [
      { reason: Reason.UNKNOWN_EXPERIMENT, variant: undefined, stored: false, layer: Layer.MEMORY },
      { reason: Reason.INVALID_UNIT, variant: undefined, stored: false, layer: Layer.MEMORY },
      { reason: Reason.UNIT_TYPE_MISMATCH, variant: undefined, stored: false, layer: Layer.MEMORY },
    ],
    after: (w) => expect([w.memory.lookups, w.redis.gets, w.storage.reads, w.storage.inserts]).toEqual([0, [], [], []]),
  },
];

describe("Assigner", () => {
  it.each(cases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const w = world();
    c.given?.(w);
    const results = await w.assigner.assign(c.cells, options(c.options));
    await w.assigner.flush();
    expect(results.map((r) => ({ reason: r.reason, variant: r.variant?.id, stored: r.stored, layer: r.layer }))).toEqual(c.expected(w));
    c.after?.(w);
  });

  it("a unit answered NEW is STICKY on the next call, from memory", async () => {
    const w = world();
    await w.assigner.assign([cell(u)], options());
    const [again] = await w.assigner.assign([cell(u)], options());
    expect([again!.reason, again!.variant?.id, again!.layer]).toEqual([Reason.STICKY, hashed(u, running), Layer.MEMORY]);
    expect(w.storage.inserts).toHaveLength(1);
  });

  it("assignNow answers a batch found whole in memory (or without the store) in the same turn, and any other as a promise", async () => {
    const w = world();
    const first = w.assigner.assignNow([cell(u)], options());
    expect(first).toBeInstanceOf(Promise); // NEW: it needs the store
    await first;
    const again = w.assigner.assignNow([cell(u), cell(u, draft)], options());
    expect(Array.isArray(again)).toBe(true);
    expect((again as Awaited<typeof again>).map((r) => [r.reason, r.layer])).toEqual([
      [Reason.STICKY, Layer.MEMORY],
      [Reason.NOT_RUNNING, Layer.MEMORY],
    ]);
    // One cell not in memory: the whole batch is a promise, the memory hit answered with it.
    const mixed = w.assigner.assignNow([cell(u), cell("unit-8")], options());
    expect(mixed).toBeInstanceOf(Promise);
    expect((await mixed).map((r) => [r.reason, r.layer])).toEqual([
      [Reason.STICKY, Layer.MEMORY],
      [Reason.NEW, Layer.COMPUTED],
    ]);
    expect(w.storage.inserts).toHaveLength(2);
  });

  it("assignGrid answers experiment-major, as assign does cell by cell", async () => {
    const units = ["g-1", "g-2", "g-3"];
    const grid = await world().assigner.assignGrid([running, noRollout], units, "user_id", options({ dryRun: true }));
    const cells = [running, noRollout].flatMap((e) => units.map((unit) => cell(unit, e)));
    const one = await world().assigner.assign(cells, options({ dryRun: true }));
    expect(grid).toEqual(one);
    expect(grid.map((r) => r.reason)).toEqual([
      Reason.NEW,
      Reason.NEW,
      Reason.NEW,
      Reason.NOT_IN_ROLLOUT,
      Reason.NOT_IN_ROLLOUT,
      Reason.NOT_IN_ROLLOUT,
    ]);
  });

  it.each([
    ["without allow_unstored, PostgreSQL unavailable is UNAVAILABLE", new ServiceError(Code.Unavailable, "down"), {}],
    ["allow_unstored does not hide other failures", new Error("a bug"), { allowUnstored: true }],
  ])("%s", async (_name, failure, o) => {
    const w = world();
    w.storage.failure = failure;
    await expect(w.assigner.assign([cell(u)], options(o))).rejects.toBe(failure);
  });

  it("a hung Redis does not hold the answer; its writes are counted until they finish", async () => {
    const w = world();
    w.redis.hung = true;
    const [r] = await w.assigner.assign([cell(u), cell("u-2")], options());
    expect(r!.reason).toBe(Reason.NEW);
    expect(w.assigner.pendingCacheWrites).toBe(2);
  });
});

/** A CacheTrust the test controls: `distrusted` experiment ids; `revoke` withdraws trust from
 * one and counts a revocation (as ConfigRegistry does when a NOTIFY names it). */
class FakeTrust implements CacheTrust {
  readonly distrusted = new Set<number>();
  private revocations = 0;
  asked = 0;

  trusts(e: { id: number }): boolean {
    this.asked++;
    return !this.distrusted.has(e.id);
  }

  mark(): number {
    return this.revocations;
  }

  revokedSince(mark: number): boolean {
    return mark !== this.revocations;
  }

  revoke(id: number): void {
    this.distrusted.add(id);
    this.revocations++;
  }
}

/** Redis whose next read resolves only when the test says, with what Redis held when it was asked. */
class GatedRedis extends FakeRedis {
  gate: Promise<void> | undefined;
  override async getMany(cells: readonly CacheCell[]) {
    const values = await super.getMany(cells);
    if (this.gate) await this.gate;
    return values;
  }
}

describe("Assigner with a CacheTrust", () => {
  const at = { experimentId: 1, generation: 0, unitId: u };
  function trusting() {
    const storage = new FakeStorage();
    const memory = new FakeMemory();
    const redis = new GatedRedis();
    const trust = new FakeTrust();
    return { storage, memory, redis, trust, assigner: new Assigner(storage, memory, redis, undefined, trust) };
  }

  it("an experiment not trusted: neither memory nor Redis is read; the store answers, its new value", async () => {
    const w = trusting();
    const old = stored(hashed(u, running));
    w.memory.setMany([at], [old]);
    await w.redis.setMany([at], [old]);
    // The store now holds an override that the caches do not know of.
    w.storage.put(1, u, stored(other(hashed(u, running)), Source.OVERRIDE));
    w.trust.distrusted.add(1);
    const [r] = await w.assigner.assign([cell(u)], options());
    expect([r!.reason, r!.variant?.id, r!.layer]).toEqual([Reason.OVERRIDE, other(hashed(u, running)), Layer.POSTGRES]);
    expect([w.memory.lookups, w.redis.gets]).toEqual([0, []]);
    // Other experiments' caches still answer.
    w.memory.setMany([{ experimentId: 2, generation: 0, unitId: u }], [stored(variantId(0))]);
    const open = makeExperiment({ id: 2, key: "open", keys: ["a", "b"] });
    const [o] = await w.assigner.assign([cell(u, open)], options());
    expect([o!.reason, o!.layer]).toEqual([Reason.STICKY, Layer.MEMORY]);
  });

  it("trust withdrawn while Redis answered: Redis's (old) answer is not used, the store's is", async () => {
    const w = trusting();
    const old = stored(hashed(u, running));
    await w.redis.setMany([at], [old]);
    w.storage.put(1, u, stored(other(hashed(u, running)), Source.OVERRIDE));
    let open!: () => void;
    w.redis.gate = new Promise<void>((resolve) => (open = resolve));
    const answer = w.assigner.assign([cell(u)], options());
    await new Promise((resolve) => setImmediate(resolve));
    expect(w.redis.gets).toHaveLength(1); // Redis was asked while trusted
    w.trust.revoke(1);
    open();
    const [r] = await answer;
    expect([r!.reason, r!.variant?.id, r!.layer]).toEqual([Reason.OVERRIDE, other(hashed(u, running)), Layer.POSTGRES]);
  });

  it("trust withdrawn during a batch: its memory answers are asked again of the store; a unit it stored stays NEW", async () => {
    const w = trusting();
    const cachedUnit = "cached-unit";
    w.memory.setMany([{ experimentId: 1, generation: 0, unitId: cachedUnit }], [stored(hashed(cachedUnit, running))]);
    // Erased meanwhile: the store no longer holds it (the new unit `u` is stored by this batch).
    const realInsert = w.storage.insert.bind(w.storage);
    w.storage.insert = async (rows) => {
      w.trust.revoke(1); // the NOTIFY arrives while the batch waits for PostgreSQL
      return realInsert(rows);
    };
    const results = await w.assigner.assign([cell(cachedUnit), cell(u)], options());
    expect(results.map((r) => [r.reason, r.layer])).toEqual([
      // Asked again: nothing stored any more, so evaluated anew (and stored).
      [Reason.NEW, Layer.COMPUTED],
      [Reason.NEW, Layer.COMPUTED],
    ]);
    expect(w.storage.get(1, cachedUnit)).toEqual(stored(hashed(cachedUnit, running)));
  });
});

describe("targeting (rule 8) in the Assigner", () => {
  /** A condition that counts its evaluations: true only for country US (a fake of a compiled CEL
   * condition; compileCondition itself is tested in test/engine/condition.test.ts). */
  function counting() {
    const c = {
      calls: 0,
      source: 'attributes.country == "US"',
      test(a: ReadonlyMap<string, unknown>) {
        c.calls++;
        return a.get("country") === "US";
      },
    };
    return c;
  }
  const targeted = (condition: ReturnType<typeof counting>, o: Parameters<typeof makeExperiment>[0] = {}): ExperimentConfig => ({
    ...makeExperiment({ id: 1, key: "running", keys: ["a", "b"], defaultVariantKey: "b", ...o }),
    condition,
  });
  const us = new Map([["country", "US"]]);
  const fr = new Map([["country", "FR"]]);

  it("a new unit whose attributes match: NEW and stored; the condition tested once", async () => {
    const w = world();
    const c = counting();
    const exp = targeted(c);
    const [r] = await w.assigner.assign([{ ...cell(u, exp), attributes: us }], options());
    expect([r!.reason, r!.variant?.id, r!.stored]).toEqual([Reason.NEW, hashed(u, exp), true]);
    expect(c.calls).toBe(1);
  });

  it("a new unit without attributes or not matching: the default variant, NOT_TARGETED, not stored; the store is read (a stored unit would be STICKY) and the condition tested once", async () => {
    for (const attributes of [undefined, fr]) {
      const w = world();
      const c = counting();
      const exp = targeted(c);
      const [r] = await w.assigner.assign([{ ...cell(u, exp), attributes }], options());
      expect([r!.reason, r!.variant?.key, r!.stored, r!.layer]).toEqual([Reason.NOT_TARGETED, "b", false, Layer.COMPUTED]);
      expect(w.storage.inserts).toEqual([]);
      expect(w.storage.reads).toEqual([[{ experimentId: 1, unitId: u }]]);
      expect(c.calls).toBe(1);
    }
  });

  it("units stored in PostgreSQL only stay STICKY (and overrides OVERRIDE) whatever their attributes", async () => {
    const w = world();
    const exp = targeted(counting());
    const s = stored(other(hashed(u, exp)));
    w.storage.put(1, "in-pg", s);
    w.storage.put(1, "overridden", stored(variantId(0), Source.OVERRIDE));
    const results = await w.assigner.assign(
      ["in-pg", "overridden"].map((id) => ({ ...cell(id, exp), attributes: fr })),
      options(),
    );
    expect(results.map((r) => [r.reason, r.variant?.id, r.stored])).toEqual([
      [Reason.STICKY, s.variantId, true],
      [Reason.OVERRIDE, variantId(0), true],
    ]);
    expect(w.storage.get(1, "in-pg")).toEqual(s);
  });

  it("the condition is not evaluated for units answered from the caches (STICKY, OVERRIDE), nor in paused or draft experiments", async () => {
    const w = world();
    const c = counting();
    const exp = targeted(c);
    const s = stored(other(hashed(u, exp)));
    await w.redis.setMany([{ experimentId: 1, generation: 0, unitId: "in-redis" }], [s]);
    w.memory.setMany(
      [
        { experimentId: 1, generation: 0, unitId: "in-memory" },
        { experimentId: 1, generation: 0, unitId: "overridden" },
      ],
      [s, stored(variantId(0), Source.OVERRIDE)],
    );
    const results = await w.assigner.assign(
      ["in-redis", "in-memory", "overridden"].map((id) => ({ ...cell(id, exp), attributes: fr })),
      options(),
    );
    expect(results.map((r) => [r.reason, r.variant?.id])).toEqual([
      [Reason.STICKY, s.variantId],
      [Reason.STICKY, s.variantId],
      [Reason.OVERRIDE, variantId(0)],
    ]);
    const paused = targeted(c, { status: ExperimentStatus.PAUSED });
    const draftT = targeted(c, { status: ExperimentStatus.DRAFT });
    const more = await w.assigner.assign(
      [
        { ...cell("new", paused), attributes: fr },
        { ...cell("new", draftT), attributes: fr },
      ],
      options(),
    );
    expect(more.map((r) => r.reason)).toEqual([Reason.PAUSED, Reason.NOT_RUNNING]);
    expect(c.calls).toBe(0);
  });

  it("assignGrid: per-unit attributes are positional to the unit ids, for every experiment", async () => {
    const w = world();
    const exp = targeted(counting());
    const open = makeExperiment({ id: 2, key: "open", keys: ["a", "b"] });
    const ids = ["g-0", "g-1", "g-2"];
    const results = await w.assigner.assignGrid([exp, open], ids, "user_id", options({ dryRun: true }), [us, fr, new Map()]);
    expect(results.map((r) => r.reason)).toEqual([
      Reason.NEW,
      Reason.NOT_TARGETED,
      Reason.NOT_TARGETED,
      Reason.NEW,
      Reason.NEW,
      Reason.NEW,
    ]);
    // One attributes map for every unit.
    const all = await w.assigner.assignGrid([exp], ids, "user_id", options({ dryRun: true }), us);
    expect(all.map((r) => r.reason)).toEqual([Reason.NEW, Reason.NEW, Reason.NEW]);
  });
});
