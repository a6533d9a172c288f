/**
 * Changed stored values across servers (SPEC.md "Stored assignments": once a call that changed
 * what a unit is answered (override set or cleared, overwriting import, erasure) has returned,
 * the server that made it never answers the old value, and every other server sharing the store
 * stops answering it within 1 s).
 *
 * Three DEDICATED server processes on one fresh database and one Redis prefix: A makes every
 * change; B (in-process cache on) is kept busy by a StreamAssign of new units the whole time;
 * C has its in-process cache off (so it answers stored values from Redis) and reaches PostgreSQL
 * through a proxy that the test can stall (harness/stalling-proxy.ts).
 *
 * 1. Cut off: C's database connections stall (its LISTEN connection and its pool: it can learn of
 *    no change), then A overrides a unit C had answered (and cached in Redis). From 1 s after A's
 *    call returned, C must never answer the old variant (it may fail, it may not answer stale).
 *    Before the fix C answered the old variant from Redis for as long as the stall lasted. Then
 *    the stall ends and C answers the override.
 * 2. Measured: at least 1,000 changes made through A, cycling OVERWRITE import, SetOverrides,
 *    ClearOverrides, SetOverrides and EraseUnits (of a unit with an override and a stored value)
 *    on units B and C had answered (so both hold the old value in a cache); after each, B and C are polled every 5 ms (without waiting for answers) until they
 *    answer the new value. The window, from A's call returning until the last old answer was
 *    received (conservative: that answer may have been decided earlier and waited in line on the
 *    busy server), must stay under 1 s on both (the contract), and no poll sent after one answered
 *    with the new value may get the old one. The p50/p99/max are printed (RELIABILITY.md quotes
 *    them), with those of the first new answer received and of one Assign on each server.
 * 3. A's own answer right after each change is never the old value (checked in 2 as well).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExperimentStatus, ImportPolicy, Reason, type Assignment } from "assignment-client";
import type { ServerProcess } from "../../harness/spawn-server.js";
import { startStallingProxy, type StallingProxy } from "../../harness/stalling-proxy.js";
import { specVariant, units } from "../grpc/helpers.js";
import { Dedicated } from "../support/dedicated.js";
import { flushPrefix, freshDatabase, freshRedisPrefix, redisUrl } from "../support/services.js";
import { codeOf, percentiles, rawClients, sleep, timeUntil } from "./support/load.js";

const d = new Dedicated();
let db: Awaited<ReturnType<typeof freshDatabase>>;
let prefix: string;
let proxy: StallingProxy;
let a: ReturnType<typeof rawClients>;
let b: ReturnType<typeof rawClients>;
let c: ReturnType<typeof rawClients>;
let servers: ServerProcess[] = [];

const KEY = "stale";
const LOAD_KEY = "stale-load";
const VARIANTS = ["a", "b", "c", "d"].map((key) => ({ key, weight: 2500 }));
const hashed = (u: string) => specVariant(u, KEY, VARIANTS);
/** A variant other than `v` (the next one). */
const other = (v: string, step = 1) => VARIANTS[(VARIANTS.findIndex((x) => x.key === v) + step) % VARIANTS.length]!.key;

beforeAll(async () => {
  db = await freshDatabase();
  prefix = freshRedisPrefix();
  const url = new URL(db.url);
  proxy = await startStallingProxy(url.hostname, Number(url.port || 5432));
  d.own("stalling proxy", () => proxy.close());
  const proxied = new URL(db.url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(proxy.port);
  const env = { DATABASE_URL: db.url, REDIS_URL: redisUrl(), REDIS_PREFIX: prefix };
  const first = await d.serverProcess("A", env);
  servers = [
    first,
    ...(await Promise.all([
      d.serverProcess("B", env),
      d.serverProcess("C", { ...env, DATABASE_URL: proxied.toString(), MEMORY_CACHE_ENTRIES: "0" } as typeof env),
    ])),
  ];
  [a, b, c] = servers.map((s) => rawClients(s.address, 20_000));
  await a.experiments.createExperiment({ key: KEY, variants: VARIANTS, status: ExperimentStatus.RUNNING });
  await a.experiments.createExperiment({ key: LOAD_KEY, variants: VARIANTS, status: ExperimentStatus.RUNNING });
  for (const x of [b, c]) {
    const known = await timeUntil(
      async () =>
        (await x.assignments.assign({ experimentKey: LOAD_KEY, unitId: "probe", options: { dryRun: true } })).assignment!.reason !==
        Reason.UNKNOWN_EXPERIMENT,
      10_000,
      20,
    );
    expect(known, "every server knows the experiments").toBeDefined();
  }
}, 120_000);

afterAll(async () => {
  for (const x of [a, b, c]) x?.close();
  await d.stopAll();
  await flushPrefix(redisUrl(), prefix);
  await db?.drop();
  expect(d.leftovers()).toEqual([]);
});

interface Poll {
  /** When it was sent and answered, in ms after the change returned. */
  sentMs: number;
  receivedMs: number;
  fresh: boolean;
  answer: string;
}

/**
 * Polls `x` for the unit every 5 ms without waiting for answers (at most 32 in flight), so that
 * when polls were sent says when the server stopped answering the old value, whatever each answer's
 * own latency on a busy server; until a poll answered the new value and every poll sent has been
 * answered, or 5 s.
 */
async function pollUntilFresh(
  x: ReturnType<typeof rawClients>,
  u: string,
  fresh: (r: Assignment) => boolean,
  changed: number,
): Promise<Poll[]> {
  const polls: Poll[] = [];
  const pending = new Set<Promise<void>>();
  let seenFresh = false;
  while (!seenFresh && performance.now() - changed < 5_000) {
    if (pending.size >= 32) {
      await Promise.race(pending);
      continue;
    }
    const sentMs = performance.now() - changed;
    const p: Promise<void> = ask(x, u, 10_000).then(
      (r) => {
        const ok = fresh(r);
        seenFresh ||= ok;
        polls.push({ sentMs, receivedMs: performance.now() - changed, fresh: ok, answer: `${r.variantKey}/${Reason[r.reason]}` });
      },
      (err) => void polls.push({ sentMs, receivedMs: performance.now() - changed, fresh: false, answer: `error ${codeOf(err)}` }),
    );
    pending.add(p);
    void p.finally(() => pending.delete(p));
    await sleep(5);
  }
  await Promise.all(pending);
  return polls.sort((p, q) => p.sentMs - q.sentMs);
}

const ask = async (x: ReturnType<typeof rawClients>, u: string, timeoutMs?: number): Promise<Assignment> =>
  (await x.assignments.assign({ experimentKey: KEY, unitId: u }, timeoutMs ? { timeoutMs } : {})).assignment!;

describe("a server that cannot learn of changes", () => {
  it("stops answering a changed value within 1 s of the change (C cut off from PostgreSQL, answering from Redis)", async () => {
    const u = "cut-off-unit";
    const h = hashed(u);
    // C stores and caches the unit (Redis: C has no in-process cache), and answers it from Redis.
    expect([(await ask(c, u)).variantKey, (await ask(c, u)).reason]).toEqual([h, Reason.STICKY]);
    await sleep(300); // the Redis fill is not awaited by the answer

    proxy.stall();
    try {
      const v = other(h);
      await a.experiments.setOverrides({ experimentKey: KEY, overrides: [{ unitId: u, variantKey: v }] });
      const changed = performance.now();
      expect([(await ask(a, u)).variantKey, (await ask(a, u)).reason], "server A never answers the old value").toEqual([
        v,
        Reason.OVERRIDE,
      ]);
      // C polled for 2.5 s: answers after 1 s must not be the old variant. A call may fail
      // (DEADLINE_EXCEEDED: C cannot reach the store), never answer stale.
      const stale: string[] = [];
      const outcomes = new Map<string, number>();
      while (performance.now() - changed < 2_500) {
        const sent = performance.now();
        let outcome: string;
        try {
          const r = await ask(c, u, 300);
          outcome = `${r.variantKey}/${Reason[r.reason]}`;
          if (r.variantKey === h && performance.now() - changed > 1_000)
            stale.push(`${Math.round(sent - changed)} ms after the change: ${outcome}`);
        } catch (err) {
          outcome = `error ${codeOf(err)}`;
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        await sleep(50);
      }
      console.info(`server C, cut off from PostgreSQL for 2.5 s after a change: ${JSON.stringify(Object.fromEntries(outcomes))}`);
      expect(stale.slice(0, 5), `${stale.length} stale answers more than 1 s after the change`).toEqual([]);
    } finally {
      proxy.resume();
    }
    // Back in touch: C answers the override.
    const back = await timeUntil(async () => (await ask(c, u, 5_000)).reason === Reason.OVERRIDE, 15_000, 50);
    expect(back, "C answers the override once it reaches PostgreSQL again").toBeDefined();
    await a.experiments.clearOverrides({ experimentKey: KEY, unitIds: [u] });
  }, 60_000);
});

type Kind = "SetOverrides" | "ClearOverrides" | "OVERWRITE import" | "EraseUnits";
/** Each unit's cycle: an imported value replaces the hashed one, an override over it is set and
 * cleared, another override is set, and the unit is erased (its stored value and its override). */
const KINDS: Kind[] = ["OVERWRITE import", "SetOverrides", "ClearOverrides", "SetOverrides", "EraseUnits"];
const CHANGES = 1_000;

describe("changed stored values, measured across servers", () => {
  it(`${CHANGES} changes through server A (overrides set and cleared, overwriting imports, erasures): B (busy with a stream) and C (Redis) answer the new value within 1 s, and never the old one again`, async () => {
    // B is kept busy: one StreamAssign of new units, 500 a message, for as long as the test runs.
    let streaming = true;
    let streamed = 0;
    const stream = (async () => {
      let n = 0;
      const requests = async function* () {
        yield { setup: { experimentKeys: [LOAD_KEY] } };
        // New units: each batch is stored, so B's pool is busy too (its reloads wait for it). At
        // most 10,000 a second, so that the database does not grow by millions of rows.
        while (streaming) {
          yield { unitIds: units(`load-${n++}-`, 500) };
          await sleep(50);
        }
      };
      for await (const r of b.assignments.streamAssign(requests(), { timeoutMs: 600_000 })) streamed += r.columns[0]!.variantIndexes.length;
    })();
    stream.catch(() => {});

    // Units cycle through the changes (KINDS), each starting from a value B and C answered (and cached).
    const pool = units("stale-unit-", 25);
    const state = new Map(pool.map((u) => [u, { variant: hashed(u), overridden: false, imported: "" }]));
    for (const u of pool) for (const x of [b, c]) await ask(x, u);
    await sleep(300);

    const windows: Record<"B" | "C", number[]> = { B: [], C: [] };
    const latencies: Record<"B" | "C", number[]> = { B: [], C: [] };
    const firstNew: Record<"B" | "C", number[]> = { B: [], C: [] };
    const byKind = new Map<Kind, number[]>();
    const problems: string[] = [];
    const started = Date.now();
    for (let i = 0; i < CHANGES; i++) {
      const u = pool[i % pool.length]!;
      const kind = KINDS[Math.floor(i / pool.length) % KINDS.length]!;
      const s = state.get(u)!;
      const old = `${s.variant}${s.overridden ? "/override" : ""}`;
      // Make the change through A; `fresh` says whether an answer is the new value.
      let fresh: (r: Assignment) => boolean;
      if (kind === "SetOverrides") {
        const v = other(s.variant);
        await a.experiments.setOverrides({ experimentKey: KEY, overrides: [{ unitId: u, variantKey: v }] });
        fresh = (r) => r.reason === Reason.OVERRIDE && r.variantKey === v;
        Object.assign(s, { variant: v, overridden: true });
      } else if (kind === "ClearOverrides") {
        await a.experiments.clearOverrides({ experimentKey: KEY, unitIds: [u] });
        // Cleared: not the override any more. SPEC answers the stored (imported) value again,
        // STICKY; a server that kept overrides in place of stored rows evaluated the unit anew
        // (the hashed variant): the reason tells the override from either.
        const imported = s.imported;
        fresh = (r) => r.reason !== Reason.OVERRIDE && (r.variantKey === imported || r.variantKey === hashed(u));
        Object.assign(s, { variant: imported, overridden: false });
      } else if (kind === "OVERWRITE import") {
        const v = other(s.variant, 2);
        const r = await a.experiments.importAssignments(
          (async function* () {
            yield { setup: { policy: ImportPolicy.OVERWRITE }, rows: [{ experimentKey: KEY, unitId: u, variantKey: v }] };
          })(),
        );
        expect(r.imported).toBe(1n);
        fresh = (x) => x.reason === Reason.STICKY && x.variantKey === v;
        Object.assign(s, { variant: v, overridden: false, imported: v });
      } else {
        const r = await a.experiments.eraseUnits({ unitIds: [u] });
        // An override and (SPEC) the stored value under it.
        expect(r.overrides).toBe(1n);
        // Erased: evaluated anew (NEW, the hashed variant), then STICKY.
        fresh = (x) => (x.reason === Reason.NEW || x.reason === Reason.STICKY) && x.variantKey === hashed(u);
        Object.assign(s, { variant: hashed(u), overridden: false, imported: "" });
      }
      const changed = performance.now();
      const mine = await ask(a, u);
      if (!fresh(mine))
        problems.push(`change ${i} (${kind} ${u}): server A answered ${mine.variantKey}/${Reason[mine.reason]} after its own change`);

      await Promise.all(
        (["B", "C"] as const).map(async (name) => {
          const polls = await pollUntilFresh(name === "B" ? b : c, u, fresh, changed);
          latencies[name].push(...polls.map((p) => p.receivedMs - p.sentMs));
          const firstFresh = polls.findIndex((p) => p.fresh);
          if (firstFresh < 0) {
            const last = polls.at(-1);
            problems.push(
              `change ${i} (${kind} ${u}): ${name} still answered ${last?.answer} (was ${old}) ${Math.round(last?.sentMs ?? 0)} ms after`,
            );
            return;
          }
          // An old answer to a poll sent after one that was answered with the new value.
          const staleAgain = polls.slice(firstFresh).find((p) => !p.fresh);
          if (staleAgain) {
            problems.push(
              `change ${i} (${kind} ${u}): ${name} answered ${staleAgain.answer} to a poll sent ${Math.round(staleAgain.sentMs)} ms after the change, after the new value`,
            );
          }
          // The window: until the last old answer was received (0: the first poll already had the
          // new value). Conservative: that answer may have been decided earlier, and waited.
          const lastOld = polls.filter((p) => !p.fresh).reduce((m, p) => Math.max(m, p.receivedMs), 0);
          windows[name].push(lastOld);
          firstNew[name].push(Math.min(...polls.filter((p) => p.fresh).map((p) => p.receivedMs)));
          if (name === "B") byKind.set(kind, [...(byKind.get(kind) ?? []), lastOld]);
        }),
      );
      if (problems.length > 10) break;
    }
    streaming = false;
    await stream;

    const fmt = (xs: number[]) => {
      const p = percentiles(xs, [50, 99, 100]);
      return `p50 ${p.p50!.toFixed(1)} ms, p99 ${p.p99!.toFixed(1)} ms, max ${p.p100!.toFixed(1)} ms`;
    };
    console.info(
      `cross-server staleness over ${windows.B.length} changes in ${Math.round((Date.now() - started) / 1000)} s ` +
        `(B streamed ${streamed} units meanwhile): B (in-process cache, busy) ${fmt(windows.B)}; C (Redis) ${fmt(windows.C)}; ` +
        `first new answer received: B ${fmt(firstNew.B)}, C ${fmt(firstNew.C)}; ` +
        `one Assign took (B) ${fmt(latencies.B)}, (C) ${fmt(latencies.C)}; ` +
        `B by kind: ${[...byKind].map(([k, xs]) => `${k} ${fmt(xs)}`).join("; ")}`,
    );
    expect(problems.slice(0, 10), `${problems.length} problems`).toEqual([]);
    expect(windows.B.length).toBe(CHANGES);
    expect(windows.C.length).toBe(CHANGES);
    expect(streamed, "B was busy streaming").toBeGreaterThan(50_000);
    expect(Math.max(...windows.B), "B: no old value received more than 1 s after a change").toBeLessThan(1_000);
    expect(Math.max(...windows.C), "C: no old value received more than 1 s after a change").toBeLessThan(1_000);
  }, 900_000);
});
