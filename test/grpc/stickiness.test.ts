/**
 * Stickiness (SPEC.md "What may change after creation", "Stored assignments"): weight and rollout
 * changes never move a stored unit; an override is never answered stale by any cache layer, on
 * this server right after the call and on another server process once it has the new
 * configuration; clearing it makes the unit answer its stored assignment again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ExperimentStatus,
  Layer,
  Reason,
  columnAnswers,
  type Client,
  type AssignmentService,
  type ExperimentService,
} from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { flushPrefix } from "../support/services.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { eventually, separateClients, specInRollout, specVariant, storedAssignments, units } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => t?.stop());

describe("weight and rollout changes", () => {
  it("after 50/50 → 10/90 stored units keep their variants (STICKY); new units follow the new weights", async () => {
    const before = [
      { key: "control", weight: 5000 },
      { key: "treatment", weight: 5000 },
    ];
    const after = [
      { key: "control", weight: 1000 },
      { key: "treatment", weight: 9000 },
    ];
    const e = (await t.experiments.createExperiment({ key: "weights", variants: before, status: ExperimentStatus.RUNNING })).experiment!;
    const old = units("w-old-", 2000);
    const first = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "weights", unitIds: old })).column!);
    old.forEach((u, i) => expect(first[i]).toMatchObject({ variantKey: specVariant(u, "weights", before), reason: Reason.NEW }));

    await t.experiments.updateExperiment({ key: "weights", version: e.version, variants: { variants: after } });

    // Units whose hashed variant differs under the new weights are the interesting ones.
    const moved = old.filter((u) => specVariant(u, "weights", before) !== specVariant(u, "weights", after));
    expect(moved.length).toBeGreaterThan(400);
    const again = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "weights", unitIds: old })).column!);
    old.forEach((u, i) => expect(again[i], u).toEqual({ ...first[i], reason: Reason.STICKY }));
    // Also through single calls, and from PostgreSQL itself.
    for (const u of moved.slice(0, 30)) {
      const a = (await t.assignments.assign({ experimentKey: "weights", unitId: u })).assignment!;
      expect([a.variantKey, a.reason]).toEqual([specVariant(u, "weights", before), Reason.STICKY]);
    }
    const stored = await storedAssignments(t.databaseUrl, "weights");
    for (const u of old) expect(stored.get(u)!.variant).toBe(specVariant(u, "weights", before));

    const fresh = units("w-new-", 2000);
    const next = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "weights", unitIds: fresh })).column!);
    fresh.forEach((u, i) => expect(next[i]).toMatchObject({ variantKey: specVariant(u, "weights", after), reason: Reason.NEW }));
    const share = next.filter((a) => a.variantKey === "control").length / fresh.length;
    expect(share).toBeGreaterThan(0.07);
    expect(share).toBeLessThan(0.13);
  });

  it("rollout 10% → 50%: nobody enrolled leaves or changes; the newcomers are exactly the SPEC ones; lowering moves nobody", async () => {
    const variants = [
      { key: "a", weight: 3000 },
      { key: "b", weight: 3000 },
      { key: "c", weight: 4000 },
    ];
    let e = (await t.experiments.createExperiment({ key: "ramp", variants, rollout: 1000, status: ExperimentStatus.RUNNING })).experiment!;
    const ids = units("r-", 3000);
    const at10 = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "ramp", unitIds: ids })).column!);
    const enrolled10 = new Set(ids.filter((_, i) => at10[i].enrolled));
    expect(enrolled10).toEqual(new Set(ids.filter((u) => specInRollout(u, "ramp", 1000))));
    expect(enrolled10.size).toBeGreaterThan(200);

    e = (await t.experiments.updateExperiment({ key: "ramp", version: e.version, rollout: 5000 })).experiment!;
    expect(e.rollout).toBe(5000);
    const at50 = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "ramp", unitIds: ids })).column!);
    ids.forEach((u, i) => {
      if (enrolled10.has(u)) {
        expect(at50[i], u).toEqual({ ...at10[i], reason: Reason.STICKY });
      } else if (specInRollout(u, "ramp", 5000)) {
        expect(at50[i], u).toEqual({ variantKey: specVariant(u, "ramp", variants), reason: Reason.NEW, enrolled: true, stored: true });
      } else {
        expect(at50[i], u).toEqual({ variantKey: "a", reason: Reason.NOT_IN_ROLLOUT, enrolled: false, stored: false });
      }
    });
    const enrolled50 = ids.filter((_, i) => at50[i].enrolled);
    expect(enrolled50.length).toBeGreaterThan(enrolled10.size * 3);

    // Lowering the rollout again never moves a stored unit.
    await t.experiments.updateExperiment({ key: "ramp", version: e.version, rollout: 500 });
    const at5 = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "ramp", unitIds: ids })).column!);
    ids.forEach((_u, i) => {
      if (at50[i].enrolled) expect(at5[i]).toEqual({ ...at50[i], reason: Reason.STICKY });
    });
    expect((await storedAssignments(t.databaseUrl, "ramp")).size).toBe(enrolled50.length);
  });
});

describe("overrides are never answered stale", () => {
  const variants = [
    { key: "v0", weight: 3400 },
    { key: "v1", weight: 3300 },
    { key: "v2", weight: 3300 },
  ];
  /** A variant other than the unit's hashed one. */
  const otherThan = (k: string) => variants[(variants.findIndex((v) => v.key === k) + 1) % variants.length].key;

  const servers: RunningServer[] = [];
  const clients: Array<{ assignments: Client<typeof AssignmentService>; experiments: Client<typeof ExperimentService> }> = [];
  afterAll(async () => {
    for (const c of clients) {
      c.assignments.close();
      c.experiments.close();
    }
    for (const s of servers) await s.close();
  });
  const startPeer = async (memoryCacheEntries?: number) => {
    const s = await startServer({
      databaseUrl: t.databaseUrl,
      redisUrl: t.redisUrl,
      redisPrefix: t.redisPrefix,
      port: 0,
      memoryCacheEntries,
      logger: createLogger("silent"),
    });
    servers.push(s);
    const c = separateClients(s.address);
    clients.push(c);
    return c;
  };

  it("memory, Redis and PostgreSQL warmed, on this server and on two more processes sharing the store", async () => {
    let e = (await t.experiments.createExperiment({ key: "ovr-stale", variants, status: ExperimentStatus.RUNNING })).experiment!;
    const peer = await startPeer(); // its own in-process cache
    const peerNoMemory = await startPeer(0); // Redis and PostgreSQL only

    const ids = units("os-", 30);
    const hashed = new Map(ids.map((u) => [u, specVariant(u, "ovr-stale", variants)]));
    const ask = async (c: Client<typeof AssignmentService>, u: string, dryRun = false) =>
      (await c.assign({ experimentKey: "ovr-stale", unitId: u, options: { explain: true, dryRun } })).assignment!;

    // Warm every layer everywhere. This server: stored (PostgreSQL), Redis and memory filled.
    for (const u of ids) expect((await ask(t.assignments, u)).reason).toBe(Reason.NEW);
    for (const u of ids) expect((await ask(t.assignments, u)).explanation!.layer).toBe(Layer.MEMORY);
    // The peers: wait until they read Redis, then read every unit (the peer fills its memory).
    const probe = "os-probe";
    await ask(t.assignments, probe);
    for (const p of [peer, peerNoMemory]) {
      expect(
        await eventually(async () => [Layer.REDIS, Layer.MEMORY].includes((await ask(p.assignments, probe)).explanation!.layer), 5_000),
      ).toBe(true);
      for (const u of ids) {
        const a = await ask(p.assignments, u);
        expect([a.variantKey, a.reason]).toEqual([hashed.get(u), Reason.STICKY]);
        expect([Layer.REDIS, Layer.MEMORY]).toContain(a.explanation!.layer);
      }
    }
    for (const u of ids) expect((await ask(peer.assignments, u)).explanation!.layer).toBe(Layer.MEMORY);
    for (const u of ids) expect((await ask(peerNoMemory.assignments, u)).explanation!.layer).toBe(Layer.REDIS);

    // Override every unit to a different variant, in one call.
    const set = await t.experiments.setOverrides({
      experimentKey: "ovr-stale",
      overrides: ids.map((u) => ({ unitId: u, variantKey: otherThan(hashed.get(u)!) })),
    });
    expect(set.count).toBe(ids.length);

    // This server, immediately: the override, from every layer it reads afterwards.
    for (const u of ids) {
      const a = await ask(t.assignments, u);
      expect([a.variantKey, a.reason, a.enrolled, a.stored], u).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE, true, true]);
      expect(a.experimentVersion).toBe(set.experimentVersion);
    }
    for (const u of ids) {
      const a = await ask(t.assignments, u);
      expect([a.variantKey, a.reason, a.explanation!.layer]).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE, Layer.MEMORY]);
    }
    const bulk = columnAnswers((await t.assignments.bulkAssign({ experimentKey: "ovr-stale", unitIds: ids })).column!);
    ids.forEach((u, i) => expect([bulk[i].variantKey, bulk[i].reason]).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE]));

    // The other processes, once they have the new configuration (≤ 2 s).
    for (const p of [peer, peerNoMemory]) {
      const fresh = await eventually(async () => {
        const got = (await p.experiments.getExperiment({ key: "ovr-stale" })).experiment!;
        const served = await ask(p.assignments, "os-version-probe", true);
        return got.version === set.experimentVersion && served.experimentVersion === set.experimentVersion;
      }, 2_000);
      expect(fresh, "peer picked up the new configuration within 2 s").toBe(true);
      for (let round = 0; round < 2; round++) {
        for (const u of ids) {
          const a = await ask(p.assignments, u);
          expect([a.variantKey, a.reason], `${u} round ${round}`).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE]);
        }
      }
      const col = columnAnswers((await p.assignments.bulkAssign({ experimentKey: "ovr-stale", unitIds: ids })).column!);
      ids.forEach((u, i) => expect([col[i].variantKey, col[i].reason]).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE]));
    }
    // Redis holds the override now; once it forgets, PostgreSQL answers the same.
    const fromRedis = await ask(peerNoMemory.assignments, ids[0]);
    expect([fromRedis.variantKey, fromRedis.explanation!.layer]).toEqual([otherThan(hashed.get(ids[0])!), Layer.REDIS]);
    await flushPrefix(t.redisUrl, t.redisPrefix);
    const fromPg = await ask(peerNoMemory.assignments, ids[0]);
    expect([fromPg.variantKey, fromPg.reason, fromPg.explanation!.layer]).toEqual([
      otherThan(hashed.get(ids[0])!),
      Reason.OVERRIDE,
      Layer.POSTGRES,
    ]);

    // ClearOverrides: the stored assignment answers again (it was never touched), on every server.
    const cleared = await t.experiments.clearOverrides({ experimentKey: "ovr-stale", unitIds: ids.slice(0, 10) });
    expect(cleared.count).toBe(10);
    for (const u of ids.slice(0, 10)) {
      const a = await ask(t.assignments, u);
      expect([a.variantKey, a.reason], u).toEqual([hashed.get(u), Reason.STICKY]);
      const b = await ask(t.assignments, u);
      expect([b.variantKey, b.reason, b.explanation!.layer], u).toEqual([hashed.get(u), Reason.STICKY, Layer.MEMORY]);
    }
    for (const p of [peer, peerNoMemory]) {
      expect(
        await eventually(
          async () => (await ask(p.assignments, "os-version-probe", true)).experimentVersion === cleared.experimentVersion,
          2_000,
        ),
      ).toBe(true);
      for (const [i, u] of ids.entries()) {
        const a = await ask(p.assignments, u);
        if (i < 10) expect([a.variantKey, a.reason], u).toEqual([hashed.get(u), Reason.STICKY]);
        else expect([a.variantKey, a.reason], u).toEqual([otherThan(hashed.get(u)!), Reason.OVERRIDE]);
      }
    }
    e = (await t.experiments.getExperiment({ key: "ovr-stale" })).experiment!;
    expect(e.version).toBe(cleared.experimentVersion);
  });
});
