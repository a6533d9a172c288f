/**
 * Servers started together on a fresh database (WORKERS=N, replicas) start pg-boss and create its
 * queues at once: every one of them starts, and the queues exist once each. (pg-boss 10's
 * create_queue can deadlock with another one; the one PostgreSQL aborts runs again.)
 */
import type PgBoss from "pg-boss";
import { describe, expect, it } from "vitest";
import { CHUNK_QUEUE, DEAD_CHUNK_QUEUE, startBoss } from "../../src/jobs/boss.js";
import { freshDatabase } from "../support/services.js";

const OPTIONS = { chunkTimeoutSeconds: 60, retryLimit: 2, retryDelaySeconds: 1, maintenanceIntervalSeconds: 60 };
const ROUNDS = 3;
const SERVERS = 4;

describe("pg-boss started by several servers at once", () => {
  it(`starts ${SERVERS} at once on a fresh database, ${ROUNDS} times, each with both queues`, { timeout: 180_000 }, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const db = await freshDatabase();
      const errors: Error[] = [];
      let reported: Error[];
      try {
        const started = await Promise.allSettled(
          Array.from({ length: SERVERS }, () => startBoss({ url: db.url, max: 2 }, OPTIONS, (e) => errors.push(e))),
        );
        const bosses = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
        try {
          expect(started.flatMap((s) => (s.status === "rejected" ? [String(s.reason)] : []))).toEqual([]);
          const queues = (await bosses[0]!.getQueues()) as PgBoss.QueueResult[];
          const ours = queues.map((q) => q.name).filter((n) => n.startsWith("assignment-")); // pg-boss has its own too
          expect(ours.sort()).toEqual([CHUNK_QUEUE, DEAD_CHUNK_QUEUE].sort());
          expect(queues.find((q) => q.name === CHUNK_QUEUE)?.deadLetter).toBe(DEAD_CHUNK_QUEUE);
        } finally {
          await Promise.all(bosses.map((b) => b.stop({ graceful: false, wait: true, close: true })));
        }
        // What the bosses reported while they started and ran, taken before the drop: a
        // connection a stopped boss still holds is then ended by the forced DROP DATABASE
        // (57P01), which is the test's doing.
        reported = errors.splice(0);
      } finally {
        // Dropped however the round ended (a failed assertion included): no database is left behind.
        await db.drop();
      }
      expect(reported).toEqual([]);
    }
  });
});
