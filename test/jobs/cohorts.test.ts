/**
 * CohortService through a real gRPC client against a real server on PostgreSQL (and, for the
 * paths that differ, on the embedded PGlite): uploads are all or nothing and de-duplicated, keep
 * upload order, name who made them, and export in pages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CohortService, createClient, type Client } from "assignment-client";
import { parseTokenFile } from "../../src/ops/token-file.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { createLogger } from "../../src/logger.js";
import { failure, status } from "../grpc/helpers.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const OPERATOR = "cohort-test-operator-0123456789";

async function* upload(name: string, ids: string[], per = 10_000, extra: object = {}) {
  yield { setup: { name, ...extra }, unitIds: ids.slice(0, per) };
  for (let i = per; i < ids.length; i += per) yield { unitIds: ids.slice(i, i + per) };
}

async function exportAll(client: Client<typeof CohortService>, name: string, batchSize = 0): Promise<string[][]> {
  const out: string[][] = [];
  for await (const m of client.exportCohort({ name, batchSize })) out.push(m.unitIds);
  return out;
}

function suite(label: string, start: () => Promise<{ address: string; stop(): Promise<void> }>) {
  describe(label, () => {
    let s: { address: string; stop(): Promise<void> };
    let client: Client<typeof CohortService>;
    beforeAll(async () => {
      s = await start();
      client = createClient(CohortService, s.address, { token: OPERATOR, timeoutMs: 60_000, retry: false });
    });
    afterAll(async () => {
      client?.close();
      await s?.stop();
    });

    it("stores each id once, in first-upload order, across messages; names the uploader", async () => {
      // 25,000 distinct ids, each sent twice (the repeat in a later message), and some thrice.
      const distinct = Array.from({ length: 25_000 }, (_, i) => `unit-${(i * 7919) % 25_000}\t${i % 3 === 0 ? "\\x" : ""}`);
      const sent = [...distinct, ...distinct.slice(0, 10_000).reverse(), ...distinct.slice(5_000, 6_000)];
      const r = await client.uploadCohort(upload("big", sent, 7_000));
      expect(r.received).toBe(BigInt(sent.length));
      expect(r.duplicates).toBe(BigInt(sent.length - distinct.length));
      expect(r.cohort?.size).toBe(25_000n);
      expect(r.cohort?.createdBy).toBe("ops-bot");
      expect(r.cohort?.unitType).toBe("user_id");
      const got = await client.getCohort({ name: "big" });
      expect(got.cohort?.size).toBe(25_000n);
      expect(got.cohort?.createdBy).toBe("ops-bot");
      const batches = await exportAll(client, "big", 3_000);
      expect(batches.map((b) => b.length)).toEqual([...Array(8).fill(3_000), 1_000]);
      expect(batches.flat()).toEqual(distinct);
    });

    it("lists and deletes; a deleted cohort is NOT_FOUND", async () => {
      await client.uploadCohort(upload("small", ["a", "b"], 10, { unitType: "device_id" }));
      const { cohorts } = await client.listCohorts({});
      expect(cohorts.map((c) => [c.name, c.unitType, c.size])).toEqual(
        expect.arrayContaining([
          ["big", "user_id", 25_000n],
          ["small", "device_id", 2n],
        ]),
      );
      await client.deleteCohort({ name: "small" });
      expect((await failure(client.getCohort({ name: "small" }))).code).toBe(status.NOT_FOUND);
      expect((await failure(client.deleteCohort({ name: "small" }))).code).toBe(status.NOT_FOUND);
      expect((await failure(exportAll(client, "small"))).code).toBe(status.NOT_FOUND);
    });

    it("refuses bad input naming it, and stores nothing", async () => {
      const bad = await failure(client.uploadCohort(upload("bad", ["ok-1", "ok-2", ""], 10)));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.details).toContain("unit_ids[2]");
      const noSetup = await failure(
        client.uploadCohort(
          (async function* () {
            yield { unitIds: ["x"] };
          })(),
        ),
      );
      expect(noSetup.code).toBe(status.INVALID_ARGUMENT);
      expect(noSetup.details).toContain("setup");
      const badName = await failure(client.uploadCohort(upload("Bad Name", ["x"])));
      expect(badName.code).toBe(status.INVALID_ARGUMENT);
      expect(badName.details).toContain("setup.name");
      const taken = await failure(client.uploadCohort(upload("big", ["x"])));
      expect(taken.code).toBe(status.ALREADY_EXISTS);
      expect((await failure(client.getCohort({ name: "bad" }))).code).toBe(status.NOT_FOUND);
      expect((await client.getCohort({ name: "big" })).cohort?.size).toBe(25_000n);
    });

    it("an upload failing in a later message stores nothing; replace swaps the cohort whole", async () => {
      const ids = Array.from({ length: 30_000 }, (_, i) => `late-${i}`);
      ids[25_000] = "x".repeat(600);
      const late = await failure(client.uploadCohort(upload("late", ids, 10_000)));
      expect(late.code).toBe(status.INVALID_ARGUMENT);
      expect(late.details).toContain("unit_ids[25000]");
      expect((await failure(client.getCohort({ name: "late" }))).code).toBe(status.NOT_FOUND);
      const r = await client.uploadCohort(upload("big", ["n-1", "n-2", "n-1"], 10, { replace: true }));
      expect(r.cohort?.size).toBe(2n);
      expect((await exportAll(client, "big")).flat()).toEqual(["n-1", "n-2"]);
    });
  });
}

const tokens = parseTokenFile(`ops-bot operator ${OPERATOR}`);
suite("on PostgreSQL", async () => {
  const t: TestServer = await startTestServer({ tokens });
  return { address: t.server.address, stop: () => t.stop() };
});
suite("on the embedded PGlite", async () => {
  const server: RunningServer = await startServer({
    pgliteDataDir: "memory://",
    port: 0,
    memoryCacheEntries: 1000,
    tokens,
    logger: createLogger("silent"),
  });
  return { address: server.address, stop: () => server.close() };
});
