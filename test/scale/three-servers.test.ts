/**
 * Many servers behind one client (README "Many servers"): three server processes
 * (harness/server-process.ts) on one database and one Redis prefix, and clients of the package
 * given the list of their addresses, which grpc-js balances round robin. One server is SIGKILLed
 * in the middle of the load.
 *
 * - Every answer equals the SPEC recomputation and, at the end, the stored row: zero wrong answers.
 * - The client with retries (the package's default: idempotent methods on UNAVAILABLE): calls in
 *   flight on the killed server are retried on the others, except one whose answer had begun
 *   (grpc-js commits a call then): such a call fails UNAVAILABLE with the killed server as its
 *   peer, and sent again by the caller (it is idempotent) it succeeds.
 * - A client without retries sees errors only for calls that were on the killed server (each
 *   failed call's peer is its address: the calls in flight there, and the few sent to it before
 *   the client noticed the closed connection), all UNAVAILABLE, and works on.
 * - Before the kill all three servers answered calls (their call counters), after it the other two.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssignmentService,
  BulkAssignRequestSchema,
  BulkAssignResponseSchema,
  ExperimentService,
  ExperimentStatus,
  Reason,
  columnAnswers,
  createClient,
  methodPath,
  type Client,
} from "assignment-client";
import type { ServerProcess } from "../../harness/spawn-server.js";
import { scrapeMetrics, specVariant, storedAssignments, units } from "../grpc/helpers.js";
import { Dedicated } from "../support/dedicated.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";
import { Mismatches, codeName, sleep, startLoad } from "../reliability/support/load.js";

const d = new Dedicated();
let db: Awaited<ReturnType<typeof freshDatabase>>;
let servers: ServerProcess[] = [];
let addresses: string[];

const KEY = "three";
const W = [
  { key: "a", weight: 3000 },
  { key: "b", weight: 3000 },
  { key: "c", weight: 4000 },
];
const UNIVERSE = units("tri-", 20_000);

beforeAll(async () => {
  db = await freshDatabase();
  d.own("database", () => db.drop());
  const prefix = freshRedisPrefix();
  d.own("redis prefix", () => flushPrefix(redisUrl(), prefix));
  const env = { DATABASE_URL: db.url, REDIS_URL: redisUrl(), REDIS_PREFIX: prefix, METRICS_PORT: "0" };
  servers = await Promise.all([0, 1, 2].map((i) => d.serverProcess(`s${i}`, env)));
  addresses = servers.map((s) => s.address);
});
afterAll(async () => {
  await d.stopAll();
  expect(d.leftovers()).toEqual([]);
});

/** BulkAssign calls each server finished so far (its metrics). */
async function callsOf(s: ServerProcess): Promise<number> {
  const port = s.announcement.serverProcess as { metricsPort: number };
  const m = await scrapeMetrics(port.metricsPort);
  let n = 0;
  for (const [k, v] of m) if (k.startsWith("assignment_grpc_calls_total{") && k.includes('method="BulkAssign"')) n += v;
  return n;
}

describe("three servers behind a round-robin client, one killed mid-load", () => {
  it(
    "gives zero wrong answers; retried calls succeed; without retries only calls on the killed server fail",
    { timeout: 240_000 },
    async () => {
      const admin = createClient(ExperimentService, addresses, { timeoutMs: 10_000 });
      const retrying: Client<typeof AssignmentService> = createClient(AssignmentService, addresses, { timeoutMs: 10_000 });
      const plain = createClient(AssignmentService, addresses, { timeoutMs: 10_000, retry: false });
      try {
        await admin.createExperiment({ key: KEY, variants: W, status: ExperimentStatus.RUNNING });
        // Every server serves the experiment before the load (each loads it by NOTIFY).
        for (const s of servers) {
          const one = createClient(AssignmentService, s.address, { timeoutMs: 10_000 });
          for (let k = 0; k < 200; k++) {
            const r = (await one.assign({ experimentKey: KEY, unitId: "probe" })).assignment!;
            if (r.reason !== Reason.UNKNOWN_EXPERIMENT) break;
            await sleep(50);
          }
          one.close();
        }

        const wrong = new Mismatches();
        const answered = new Map<string, string>();
        const check = (ids: readonly string[], answers: ReturnType<typeof columnAnswers>) => {
          answers.forEach((x, i) => {
            const u = ids[i]!;
            const want = specVariant(u, KEY, W);
            if (x.variantKey !== want || (x.reason !== Reason.NEW && x.reason !== Reason.STICKY)) {
              wrong.add(`${u}: ${x.variantKey}/${Reason[x.reason]}, want ${want}`);
            }
            answered.set(u, x.variantKey);
          });
        };
        const pick = (w: number, i: number) => {
          const from = ((w * 7_919 + i * 104_729) % (UNIVERSE.length / 50)) * 50;
          return UNIVERSE.slice(from, from + 50); // overlapping batches: new and stored units
        };

        const method = AssignmentService.method.bulkAssign;
        /** One BulkAssign on `channel` (the client's own, with its service config), with the peer
         * the call (its last attempt) went to. */
        const bulk = (channel: grpc.Client, ids: readonly string[]) =>
          new Promise<{ err?: grpc.ServiceError; peer: string; res?: ReturnType<typeof fromBinary<typeof BulkAssignResponseSchema>> }>(
            (resolve) => {
              const call = channel.makeUnaryRequest(
                methodPath(method),
                (m: object) => Buffer.from(toBinary(BulkAssignRequestSchema, create(BulkAssignRequestSchema, m))),
                (b: Buffer) => fromBinary(BulkAssignResponseSchema, b),
                { experimentKey: KEY, unitIds: [...ids] },
                new grpc.Metadata(),
                { deadline: Date.now() + 10_000 },
                (err, res) => resolve({ err: err ?? undefined, peer: call.getPeer(), res }),
              );
            },
          );

        // The retrying client (grpc-js's retryPolicy from the package): 8 workers. grpc-js retries
        // a call only until the server began to answer it (then the call is committed), so a
        // call cut off in the middle of its answer by the kill fails even so: the caller sends
        // it again (it is idempotent), and that must succeed.
        const retryErrors: { code: number; peer: string }[] = [];
        const resentFailures: string[] = [];
        const withRetries = startLoad(8, { maxIterationsPerWorker: 100_000, maxMs: 150_000 }, async (w, i) => {
          const ids = pick(w, i);
          const r = await bulk(retrying.channel, ids);
          if (r.res) return check(ids, columnAnswers(r.res.column!));
          retryErrors.push({ code: r.err!.code, peer: r.peer });
          const again = await bulk(retrying.channel, ids);
          if (again.res) check(ids, columnAnswers(again.res.column!));
          else resentFailures.push(`${codeName(again.err!.code)}: ${again.err!.message}`);
        });

        // The client without retries.
        const plainErrors: { code: number; peer: string }[] = [];
        let plainOk = 0;
        const PLAIN_WORKERS = 6;
        const withoutRetries = startLoad(PLAIN_WORKERS, { maxIterationsPerWorker: 100_000, maxMs: 150_000 }, async (w, i) => {
          const ids = pick(w + 100, i);
          const r = await bulk(plain.channel, ids);
          if (r.res) {
            plainOk++;
            check(ids, columnAnswers(r.res.column!));
          } else plainErrors.push({ code: r.err!.code, peer: r.peer });
        });

        // Load on all three, then a SIGKILL of one in the middle of it, then load on the other two.
        let ended = false;
        void Promise.all([withRetries.done, withoutRetries.done]).then(() => (ended = true));
        const calls = () => withRetries.iterations() + withoutRetries.iterations();
        const untilCalls = async (n: number) => {
          while (calls() < n && !ended) await sleep(20);
          expect(ended, "the load ended (time bound) before it made its calls").toBe(false);
        };
        await untilCalls(400);
        const before = await Promise.all(servers.map(callsOf));
        expect(
          before.every((n) => n > 0),
          `every server answered calls before the kill: ${before.join(", ")}`,
        ).toBe(true);
        const victim = servers[1]!;
        victim.signal("SIGKILL");
        await victim.exited;
        const okAtKill = plainOk;
        await untilCalls(calls() + 800);
        await Promise.all([withRetries.stop(), withoutRetries.stop()]);
        const survivors = [servers[0]!, servers[2]!];
        const after = await Promise.all(survivors.map(callsOf));
        expect(after[0]! > before[0]! && after[1]! > before[2]!, "both survivors answered after the kill").toBe(true);

        expect(wrong.first, `${wrong.count} wrong answers`).toEqual([]);
        // Errors only for calls on the killed server, far fewer with retries; resent, they succeed.
        for (const e of retryErrors) expect([codeName(e.code), e.peer]).toEqual(["UNAVAILABLE", victim.address]);
        expect(resentFailures).toEqual([]);
        for (const e of plainErrors) expect([codeName(e.code), e.peer]).toEqual(["UNAVAILABLE", victim.address]);
        expect(plainOk, "the client without retries works on after the kill").toBeGreaterThan(okAtKill);

        // What was answered is what is stored.
        const stored = await storedAssignments(db.url, KEY);
        for (const [u, v] of answered) expect(stored.get(u)?.variant, u).toBe(v);
        expect(answered.size).toBeGreaterThan(1_000);
      } finally {
        admin.close();
        retrying.close();
        plain.close();
      }
    },
  );
});
