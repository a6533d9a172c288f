/**
 * A stream of new units: once a whole batch found nothing stored, later batches skip the Redis
 * read (it could only miss) and go to PostgreSQL, whose INSERT meets any unit stored meanwhile.
 * The answers must be exactly those of reading Redis, and Redis must still be filled.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ImportPolicy, Reason } from "assignment-client";
import { eventually, scrapeMetrics, specVariant, units, type WeightedVariant } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { chunk, differences, responseAnswers, runStream, streamRequests } from "./support/streams.js";

const lookups = (m: Map<string, number>, layer: string) =>
  (m.get(`assignment_cache_lookups_total{layer="${layer}",result="hit"}`) ?? 0) +
  (m.get(`assignment_cache_lookups_total{layer="${layer}",result="miss"}`) ?? 0);

describe("a cohort of new units skips the Redis read", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ metricsPort: 0 });
  });
  afterAll(async () => t?.stop());

  it("answers units stored elsewhere STICKY with their stored variant, new ones NEW, and still fills Redis", async () => {
    const variants: WeightedVariant[] = [
      { key: "a", weight: 5000 },
      { key: "b", weight: 5000 },
    ];
    await t.experiments.createExperiment({ key: "cohort", variants, status: ExperimentStatus.RUNNING });
    const hashed = (u: string) => specVariant(u, "cohort", variants);
    const other = (k: string) => (k === "a" ? "b" : "a");

    // Stored before the stream, in PostgreSQL only, each with the variant its hash would NOT pick:
    // computing NEW for one of them would show.
    const old = units("old-", 300);
    const imported = await t.experiments.importAssignments(
      (async function* () {
        yield {
          setup: { policy: ImportPolicy.SKIP_EXISTING },
          rows: old.map((u) => ({ experimentKey: "cohort", unitId: u, variantKey: other(hashed(u)) })),
        };
      })(),
    );
    expect(imported.imported).toBe(300n);

    // Eight batches of new units, then one mixing the stored units in, then two more new ones.
    const fresh = units("new-", 10_700);
    const batches = [...chunk(fresh.slice(0, 8_000), 1_000), [...old, ...fresh.slice(8_000, 8_700)], ...chunk(fresh.slice(8_700), 1_000)];
    const before = await scrapeMetrics(t.server.metricsPort!);
    const responses = await runStream(t.assignments, streamRequests({ experimentKeys: ["cohort"] }, batches));
    const ids = batches.flat();
    const got = responses.flatMap((r) => responseAnswers(r)[0]);
    const stored = new Set(old);
    expect(
      differences(ids, got, (u) =>
        stored.has(u)
          ? { variantKey: other(hashed(u)), reason: Reason.STICKY, enrolled: true, stored: true }
          : { variantKey: hashed(u), reason: Reason.NEW, enrolled: true, stored: true },
      ),
    ).toEqual([]);

    // Every cell missed the in-process cache; Redis was asked for some (the first batches), not all.
    const after = await scrapeMetrics(t.server.metricsPort!);
    const memory = lookups(after, "memory") - lookups(before, "memory");
    const redis = lookups(after, "redis") - lookups(before, "redis");
    expect(memory).toBe(ids.length);
    expect(redis).toBeGreaterThanOrEqual(1_000);
    expect(redis).toBeLessThan(ids.length - 1_000);

    // What PostgreSQL answered was still written to Redis, for every unit of the stream.
    const r = new Redis(t.redisUrl);
    try {
      const count = async () => {
        let n = 0;
        let cursor = "0";
        do {
          const [next, keys] = await r.scan(cursor, "MATCH", `${t.redisPrefix}*`, "COUNT", 5_000);
          cursor = next;
          n += keys.length;
        } while (cursor !== "0");
        return n;
      };
      expect(await eventually(async () => (await count()) === ids.length, 5_000)).toBe(true);
    } finally {
      r.disconnect();
    }
  });
});
