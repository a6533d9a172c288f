/**
 * Page loads that name the unit's partition of assignments (src/store/partition-layout.ts), seen
 * through a real gRPC client: a second server without caches answers every stored unit (awkward
 * ids included) and override from PostgreSQL exactly as the server that stored them, and its
 * statements name the partition the database put each unit's rows in.
 */
import { type AssignmentService, type Client, ExperimentStatus, Reason } from "assignment-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/server.js";
import type { Queryable } from "../../src/store/database.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { eventually, separateClients, sql, units } from "./helpers.js";

let t: TestServer;
let peer: RunningServer | undefined;
let peerClient: ReturnType<typeof separateClients> | undefined;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  peerClient?.assignments.close();
  peerClient?.experiments.close();
  await peer?.close();
  await t?.stop();
});

const variants = [
  { key: "a", weight: 3400 },
  { key: "b", weight: 3300 },
  { key: "c", weight: 3300 },
];
const KEYS = ["pr-1", "pr-2", "pr-3", "pr-4"];

describe("page loads on a server that names partitions", () => {
  it("answer every stored unit and override as the server that stored them, from the unit's own partition", async () => {
    for (const key of KEYS) await t.experiments.createExperiment({ key, variants, status: ExperimentStatus.RUNNING });
    const ids = [...units("pr-u", 60), "é", "\u{1F600}", "日本語", "a b", "x".repeat(200)];
    type Answer = { key: string; variant: string; reason: Reason };
    const answers = async (c: Client<typeof AssignmentService>, u: string): Promise<Answer[]> =>
      (await c.assignUnit({ units: { user_id: u }, experimentKeys: KEYS })).assignments.map((a) => ({
        key: a.experimentKey,
        variant: a.variantKey,
        reason: a.reason,
      }));
    const stored = new Map<string, Answer[]>();
    for (const u of ids) {
      const first = await answers(t.assignments, u);
      expect(first.map((a) => a.reason)).toEqual(KEYS.map(() => Reason.NEW));
      stored.set(u, first);
    }
    // Overrides of two units in one experiment.
    await t.experiments.setOverrides({
      experimentKey: "pr-2",
      overrides: [ids[0]!, "é"].map((u) => ({ unitId: u, variantKey: stored.get(u)![1]!.variant === "a" ? "b" : "a" })),
    });
    const want = new Map(
      [...stored].map(([u, as]) => [
        u,
        as.map((a) =>
          a.key === "pr-2" && (u === ids[0] || u === "é")
            ? { ...a, variant: a.variant === "a" ? "b" : "a", reason: Reason.OVERRIDE }
            : { ...a, reason: Reason.STICKY },
        ),
      ]),
    );

    // A second server with no cache at all: every page load reads PostgreSQL. Its statements are
    // recorded as they go to the database.
    peer = await startServer({ databaseUrl: t.databaseUrl, port: 0, memoryCacheEntries: 0, logger: createLogger("silent") });
    peerClient = separateClients(peer.address);
    const sent: string[] = [];
    const db = peer.database as Queryable;
    const query = db.query.bind(db);
    db.query = ((text: string, values?: unknown[]) => {
      sent.push(text);
      return query(text, values);
    }) as Queryable["query"];
    const named = () => sent.map((s) => /LEFT JOIN (\S+) a ON/.exec(s)?.[1]).filter((n) => n !== undefined);
    // Until it has read the layout (at its first page load) it reads the partitioned table itself.
    expect(
      await eventually(async () => {
        await answers(peerClient!.assignments, "pr-probe");
        return named().some((n) => n.startsWith("assignments_p"));
      }, 5_000),
    ).toBe(true);

    const homes = new Map(
      (
        await sql<{ u: string; p: string }>(
          t.databaseUrl,
          `SELECT DISTINCT unit_id AS u, tableoid::regclass::text AS p FROM assignments WHERE unit_id = ANY($1::text[])`,
          [ids],
        )
      ).map((r) => [r.u, r.p]),
    );
    expect(homes.size).toBe(ids.length);
    for (const u of ids) {
      sent.length = 0;
      expect(await answers(peerClient.assignments, u), JSON.stringify(u)).toEqual(want.get(u));
      expect(named(), JSON.stringify(u)).toEqual([homes.get(u)]);
    }
  });
});
