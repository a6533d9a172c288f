/**
 * SPEC.md "Stored assignments": if the store cannot be reached, a call fails with UNAVAILABLE,
 * unless it allows unstored answers; then it gets the hashed variant with stored = false. The
 * server recovers by itself once PostgreSQL accepts connections again.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, Reason, columnAnswers } from "assignment-client";
import { CACHE_TRUST_MS } from "../../src/server-defaults.js";
import { serverDatabaseUrl } from "../support/services.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import {
  databaseNameOf,
  eventually,
  expectFailure,
  sleep,
  specInRollout,
  specVariant,
  status,
  storedAssignments,
  units,
} from "./helpers.js";

let t: TestServer;
let admin: pg.Client;
let blocked = false;
const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;

async function block(name: string) {
  await admin.query(`ALTER DATABASE ${ident(name)} WITH ALLOW_CONNECTIONS false`);
  blocked = true;
  await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
}
async function unblock(name: string) {
  await admin.query(`ALTER DATABASE ${ident(name)} WITH ALLOW_CONNECTIONS true`);
  blocked = false;
}

beforeAll(async () => {
  t = await startTestServer();
  admin = new pg.Client({ connectionString: serverDatabaseUrl() });
  await admin.connect();
});
afterAll(async () => {
  if (blocked) await unblock(databaseNameOf(t.databaseUrl)).catch(() => {});
  await admin?.end();
  await t?.stop();
});

const variants = [
  { key: "a", weight: 3000 },
  { key: "b", weight: 7000 },
];

describe("PostgreSQL unreachable", () => {
  it("UNAVAILABLE, or hashed and unstored with allow_unstored; recovers by itself", async () => {
    await t.experiments.createExperiment({ key: "outage", variants, rollout: 8000, status: ExperimentStatus.RUNNING });
    const known = units("known-", 20).filter((u) => specInRollout(u, "outage", 8000));
    await t.assignments.bulkAssign({ experimentKey: "outage", unitIds: known });
    const name = databaseNameOf(t.databaseUrl);

    await block(name);

    // A new unit needs the store: UNAVAILABLE, for every assignment call.
    const fresh = units("fresh-", 40).filter((u) => specInRollout(u, "outage", 8000));
    const unit = fresh[0];
    await expectFailure(t.assignments.assign({ experimentKey: "outage", unitId: unit }), status.UNAVAILABLE);
    await expectFailure(t.assignments.bulkAssign({ experimentKey: "outage", unitIds: fresh }), status.UNAVAILABLE);
    await expectFailure(t.assignments.matrixAssign({ experimentKeys: ["outage"], unitIds: fresh }), status.UNAVAILABLE);
    await expectFailure(t.assignments.assignUnit({ units: { user_id: unit }, experimentKeys: ["outage"] }), status.UNAVAILABLE);
    // Dry runs still read the store.
    await expectFailure(t.assignments.assign({ experimentKey: "outage", unitId: unit, options: { dryRun: true } }), status.UNAVAILABLE);
    // Admin calls too.
    await expectFailure(t.experiments.getExperiment({ key: "outage" }), status.UNAVAILABLE);
    await expectFailure(t.experiments.getExperimentStats({ key: "outage" }), status.UNAVAILABLE);

    // allow_unstored: the hashed variant, stored = false.
    const a = (await t.assignments.assign({ experimentKey: "outage", unitId: unit, options: { allowUnstored: true } })).assignment!;
    expect([a.variantKey, a.reason, a.stored]).toEqual([specVariant(unit, "outage", variants), Reason.NEW, false]);
    const col = columnAnswers(
      (await t.assignments.bulkAssign({ experimentKey: "outage", unitIds: fresh, options: { allowUnstored: true } })).column!,
    );
    fresh.forEach((u, i) => expect([col[i].variantKey, col[i].stored]).toEqual([specVariant(u, "outage", variants), false]));
    // Outside the rollout the default is answered anyway (no store needed for it to be right).
    const outside = units("out-", 60).find((u) => !specInRollout(u, "outage", 8000))!;
    const o = (await t.assignments.assign({ experimentKey: "outage", unitId: outside, options: { allowUnstored: true } })).assignment!;
    expect([o.variantKey, o.stored, o.enrolled]).toEqual(["a", false, false]);
    // Units cached before the outage: once the server has been out of touch with the store for
    // longer than its caches are trusted, it cannot know whether they changed since (SPEC: a
    // changed value is answered by no server more than 1 s after the change), so its caches do
    // not answer them: UNAVAILABLE, or hashed and unstored with allow_unstored.
    await sleep(CACHE_TRUST_MS + 250);
    for (const u of known) {
      await expectFailure(t.assignments.assign({ experimentKey: "outage", unitId: u }), status.UNAVAILABLE);
      const k = (await t.assignments.assign({ experimentKey: "outage", unitId: u, options: { allowUnstored: true } })).assignment!;
      expect([k.variantKey, k.stored]).toEqual([specVariant(u, "outage", variants), false]);
    }
    // Configuration-only answers need no store.
    const unknown = (await t.assignments.assign({ experimentKey: "not-there", unitId: unit })).assignment!;
    expect(unknown.reason).toBe(Reason.UNKNOWN_EXPERIMENT);

    await unblock(name);

    // The server reconnects by itself.
    const recovered = await eventually(
      async () => {
        await t.assignments.assign({ experimentKey: "outage", unitId: "probe-unit" });
        return true;
      },
      15_000,
      100,
    );
    expect(recovered).toBe(true);
    const after = (await t.assignments.assign({ experimentKey: "outage", unitId: unit })).assignment!;
    expect([after.variantKey, after.reason, after.stored]).toEqual([specVariant(unit, "outage", variants), Reason.NEW, true]);
    const stored = await storedAssignments(t.databaseUrl, "outage");
    expect(stored.get(unit)?.variant).toBe(specVariant(unit, "outage", variants));
    // Nothing answered unstored was stored behind the caller's back.
    for (const u of fresh.slice(1)) expect(stored.has(u)).toBe(false);
    expect((await t.experiments.getExperiment({ key: "outage" })).experiment!.key).toBe("outage");
  });

  it("a call naming an experiment this server does not hold is UNAVAILABLE, not NOT_FOUND, while the store is unreachable", async () => {
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream) {
        // read it all
      }
    };
    const copy = () =>
      drain(t.experiments.copyAssignments({ sourceExperimentKey: "elsewhere", targetExperimentKey: "outage", variantMapping: { a: "a" } }));
    const exportIt = () => drain(t.experiments.exportAssignments({ experimentKey: "elsewhere" }));
    // The store can tell: there is no such experiment.
    await expectFailure(copy(), status.NOT_FOUND, 'source_experiment_key: no experiment "elsewhere"');
    await expectFailure(exportIt(), status.NOT_FOUND, 'experiment_key: no experiment "elsewhere"');
    const name = databaseNameOf(t.databaseUrl);
    await block(name);
    try {
      // It cannot: the experiment may well exist (made through another server a moment ago).
      await expectFailure(copy(), status.UNAVAILABLE);
      await expectFailure(exportIt(), status.UNAVAILABLE);
    } finally {
      await unblock(name);
    }
  });
});
