/**
 * WatchAssignments over real gRPC against a real server and PostgreSQL: what a consumer receives,
 * resuming from its stored position, equals what the database holds (stored rows, overrides,
 * erasures); filters; "now"; OUT_OF_RANGE past retention.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type AssignmentEvent, AssignmentEventKind, ExperimentStatus, type WatchAssignmentsRequestSchema } from "assignment-client";
import { EventLog } from "../../src/store/event-log.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { status } from "../grpc/helpers.js";

let t: TestServer;
const W = [
  { key: "a", weight: 5000 },
  { key: "b", weight: 5000 },
];

beforeAll(async () => {
  t = await startTestServer({ events: { sequenceMs: 10 } });
  await t.experiments.createExperiment({ key: "w1", variants: W, unitType: "user_id", status: ExperimentStatus.RUNNING });
  await t.experiments.createExperiment({ key: "w2", variants: W, unitType: "user_id", status: ExperimentStatus.RUNNING });
  await t.experiments.createExperiment({ key: "w3", variants: W, unitType: "device_id", status: ExperimentStatus.RUNNING });
});
afterAll(async () => {
  await t?.stop();
});

/** Reads events until `until` says enough (or `ms` pass), then cancels the call. */
async function watch(
  req: MessageInitShape<typeof WatchAssignmentsRequestSchema>,
  until: (got: AssignmentEvent[]) => boolean,
  ms = 20_000,
): Promise<{ events: AssignmentEvent[]; positions: bigint[] }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  const events: AssignmentEvent[] = [];
  const positions: bigint[] = [];
  try {
    for await (const m of t.experiments.watchAssignments(req, { signal: ac.signal, timeoutMs: 0 })) {
      positions.push(m.position);
      events.push(...m.events);
      if (until(events)) break;
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { events, positions };
}

/** The database's own view: stored rows and overrides as "experiment/unit" -> variant. */
async function truth() {
  const q = async (sql: string) => {
    const { rows } = await t.server.database.query<{ cell: string; v: string }>(sql);
    return new Map(rows.map((r) => [r.cell, r.v]));
  };
  const variantKey = (tbl: string) => `(SELECT v->>'key' FROM jsonb_array_elements(e.variants) v WHERE (v->>'id')::int = ${tbl}.variant)`;
  return {
    stored: await q(
      `SELECT e.key || '/' || a.unit_id AS cell, ${variantKey("a")} AS v FROM assignments a JOIN experiments e ON e.id = a.experiment_id`,
    ),
    overrides: await q(
      `SELECT e.key || '/' || o.unit_id AS cell, ${variantKey("o")} AS v FROM overrides o JOIN experiments e ON e.id = o.experiment_id`,
    ),
  };
}

function replay(events: AssignmentEvent[]) {
  const stored = new Map<string, string>();
  const overrides = new Map<string, string>();
  const typeOf = (key: string) => (key === "w3" ? "device_id" : "user_id");
  for (const e of events) {
    const cell = `${e.experimentKey}/${e.unitId}`;
    switch (e.kind) {
      case AssignmentEventKind.ERASED:
        for (const m of [stored, overrides])
          for (const k of [...m.keys()]) {
            const [exp, unit] = k.split("/") as [string, string];
            if (unit === e.unitId && typeOf(exp) === e.unitType) m.delete(k);
          }
        break;
      case AssignmentEventKind.OVERRIDE_SET:
        overrides.set(cell, e.variantKey);
        break;
      case AssignmentEventKind.OVERRIDE_CLEARED:
        overrides.delete(cell);
        break;
      default:
        stored.set(cell, e.variantKey);
    }
  }
  return { stored, overrides };
}

describe("WatchAssignments", () => {
  it("a consumer resuming from its stored position gets every change exactly once, in order, equal to what is stored", async () => {
    const units = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);
    await t.assignments.bulkAssign({ experimentKey: "w1", unitIds: units("u", 300) });
    // The consumer reads part, "crashes", and resumes after the last position it processed.
    const first = await watch({ start: { case: "afterPosition", value: 0n }, maxBatch: 50 }, (got) => got.length >= 120);
    const stored = first.events.slice(0, 120);
    const resumeAt = stored[stored.length - 1]!.position;
    // Meanwhile more changes of every kind.
    await t.assignments.bulkAssign({ experimentKey: "w2", unitIds: units("u", 100) });
    await t.assignments.bulkAssign({ experimentKey: "w3", unitType: "device_id", unitIds: units("u", 20) });
    await t.experiments.setOverrides({
      experimentKey: "w1",
      overrides: [
        { unitId: "u1", variantKey: "b" },
        { unitId: "u2", variantKey: "b" },
      ],
    });
    await t.experiments.clearOverrides({ experimentKey: "w1", unitIds: ["u2"] });
    await t.experiments.eraseUnits({ unitType: "user_id", unitIds: ["u3", "u4"] });
    const expectedTotal = 300 + 100 + 20 + 2 + 1 + 2;
    const rest = await watch({ start: { case: "afterPosition", value: resumeAt } }, (got) => got.length >= expectedTotal - 120);
    const all = [...stored, ...rest.events];
    expect(all).toHaveLength(expectedTotal);
    expect(all.map((e) => Number(e.position))).toEqual(all.map((_, i) => i + 1));
    const r = replay(all);
    const db = await truth();
    expect(r.stored).toEqual(db.stored);
    expect(r.overrides).toEqual(db.overrides);
    const erased = all.filter((e) => e.kind === AssignmentEventKind.ERASED);
    expect(erased.map((e) => [e.unitType, e.unitId, e.experimentKey])).toEqual(
      expect.arrayContaining([
        ["user_id", "u3", ""],
        ["user_id", "u4", ""],
      ]),
    );
    expect(erased).toHaveLength(2);
  });

  it("filters by experiment (with the erasures of its unit type) and starts from now", async () => {
    const before = await watch({ start: { case: "fromNow", value: true } }, () => true);
    expect(before.events).toEqual([]);
    const now = before.positions[0]!;
    await t.assignments.bulkAssign({ experimentKey: "w1", unitIds: ["n1", "n2"] });
    await t.assignments.bulkAssign({ experimentKey: "w3", unitType: "device_id", unitIds: ["n1", "n2", "n3"] });
    await t.experiments.eraseUnits({ unitType: "user_id", unitIds: ["n1"] });
    await t.experiments.eraseUnits({ unitType: "device_id", unitIds: ["n1"] });
    const onlyW3 = await watch({ start: { case: "afterPosition", value: now }, experimentKeys: ["w3"] }, (got) => got.length >= 4);
    expect(onlyW3.events.map((e) => [e.kind, e.experimentKey, e.unitType, e.unitId])).toEqual([
      [AssignmentEventKind.ASSIGNED, "w3", "device_id", "n1"],
      [AssignmentEventKind.ASSIGNED, "w3", "device_id", "n2"],
      [AssignmentEventKind.ASSIGNED, "w3", "device_id", "n3"],
      [AssignmentEventKind.ERASED, "", "device_id", "n1"],
    ]);
  });

  it("refuses an unknown experiment and a pruned position (OUT_OF_RANGE naming the oldest kept)", async () => {
    await expect(watch({ experimentKeys: ["nope"] }, () => true)).rejects.toMatchObject({ code: status.NOT_FOUND });
    // Positions are PostgreSQL bigints: a uint64 above 2^63 - 1 can name no event.
    await expect(watch({ start: { case: "afterPosition", value: 2n ** 63n } }, () => true)).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining("after_position: must be at most 9223372036854775807"),
    });
    const log = new EventLog(t.server.database);
    const last = await log.lastPosition();
    await log.prune(undefined, 5);
    const oldest = last - 4n;
    await expect(watch({ start: { case: "afterPosition", value: 3n } }, () => true)).rejects.toMatchObject({
      code: status.OUT_OF_RANGE,
      details: expect.stringContaining(`oldest available is ${oldest}`),
    });
    const fromOldest = await watch({ start: { case: "fromOldest", value: true } }, (got) => got.length >= 5);
    expect(fromOldest.events.map((e) => e.position)).toEqual([oldest, oldest + 1n, oldest + 2n, oldest + 3n, oldest + 4n]);
    // A batch consumer's call ends once it has caught up.
    const caughtUp = await watch({ start: { case: "fromOldest", value: true }, stopWhenCaughtUp: true }, () => false);
    expect(caughtUp.events.map((e) => e.position)).toEqual([oldest, oldest + 1n, oldest + 2n, oldest + 3n, oldest + 4n]);
    // Resuming right before the oldest kept is fine.
    const edge = await watch({ start: { case: "afterPosition", value: oldest - 1n } }, (got) => got.length >= 1);
    expect(edge.events[0]!.position).toBe(oldest);
  });
});
