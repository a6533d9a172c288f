/**
 * A stream that stores faster than Redis takes the values is held to Redis's pace: values wait
 * in the server only up to a bound (MAX_PENDING_FILL_CELLS, plus the batches in flight), instead
 * of queueing until their commands time out, and every one of them reaches Redis, as do the values
 * of the page loads answered meanwhile.
 *
 * Its own redis-server, whose writes are paused again and again with CLIENT PAUSE … WRITE (reads
 * go on), so no other test file is disturbed.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, AssignmentService, ExperimentService, ExperimentStatus, Reason } from "assignment-client";
import { createLogger } from "../../src/logger.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { MAX_PENDING_FILL_CELLS } from "../../src/service/assigner.js";
import { STREAM_BATCHES_IN_FLIGHT } from "../../src/service/assignment-service.js";
import { units } from "../grpc/helpers.js";
import type { RedisServer } from "../../harness/redis-server.js";
import { Dedicated } from "../support/dedicated.js";
import { freshDatabase, freshRedisPrefix } from "../support/services.js";
import { chunk, runStream, streamRequests } from "../streaming/support/streams.js";

const d = new Dedicated();
let redis: RedisServer;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let server: RunningServer;
const prefix = freshRedisPrefix();

beforeAll(async () => {
  redis = await d.redis({ name: "redis-slow-fills" });
  db = await freshDatabase();
  server = await startServer({
    databaseUrl: db.url,
    redisUrl: redis.url,
    redisPrefix: prefix,
    port: 0,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? "silent"),
  });
  d.own("server", () => server.close());
});
afterAll(async () => {
  await d.stopAll();
  await db?.drop();
  expect(d.leftovers()).toEqual([]);
});

describe("Redis slower than the stream", () => {
  it("holds the values waiting for Redis under the bound, answers every unit, and caches every one", async () => {
    const admin = createClient(ExperimentService, server.address);
    const assign = createClient(AssignmentService, server.address, { timeoutMs: 120_000 });
    const control = new Redis(redis.url);
    try {
      await admin.createExperiment({
        key: "slow",
        variants: [
          { key: "a", weight: 5000 },
          { key: "b", weight: 5000 },
        ],
        status: ExperimentStatus.RUNNING,
      });
      const BATCH = 5_000;
      const ids = units("s-", 150_000);

      // Redis takes writes half the time: 100 ms paused, 100 ms not.
      let pausing = true;
      const pauses = (async () => {
        while (pausing) {
          await control.call("CLIENT", "PAUSE", "100", "WRITE");
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      let most = 0;
      const sampler = setInterval(() => (most = Math.max(most, server.assigner.pendingCacheWrites)), 1);
      let answers: number[] = [];
      // Page loads meanwhile are answered (and stored) like any other. (That they are not held to
      // Redis's pace, as the stream is, is not pinned here: from outside the server, a page load
      // that waited cannot be told from one that did not without timing it.)
      let pageLoadsAnswered = 0;
      let streaming = true;
      const pageLoads = (async () => {
        for (let i = 0; streaming; i++) {
          const a = (await assign.assign({ experimentKey: "slow", unitId: `page-${i}` })).assignment!;
          expect(a.reason).toBe(Reason.NEW);
          pageLoadsAnswered++;
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      try {
        const responses = await runStream(assign, streamRequests({ experimentKeys: ["slow"] }, chunk(ids, BATCH)));
        answers = responses.flatMap((r) => [...r.columns[0].reasons]);
      } finally {
        streaming = false;
        await pageLoads;
        clearInterval(sampler);
        pausing = false;
        await pauses;
      }

      expect(answers.length).toBe(ids.length);
      expect(answers.filter((r) => r !== Reason.NEW)).toEqual([]);
      // Without the bound, the values of nearly all 150,000 units would have waited at once.
      expect(most).toBeGreaterThan(MAX_PENDING_FILL_CELLS / 2);
      expect(most).toBeLessThanOrEqual(MAX_PENDING_FILL_CELLS + STREAM_BATCHES_IN_FLIGHT * BATCH);
      expect(pageLoadsAnswered).toBeGreaterThan(0);
      // None was dropped: every unit's value is in Redis.
      await server.assigner.flush();
      expect(await control.dbsize()).toBe(ids.length + pageLoadsAnswered);
    } finally {
      control.disconnect();
      admin.close();
      assign.close();
    }
  });
});
