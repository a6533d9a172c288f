/**
 * Helpers for the gRPC integration tests. The expected answers are derived here from the
 * formulas of SPEC.md ("Hashing (hash version 1)"), written independently of src/engine: only
 * `hashV1` (MurmurHash3 x86 32, pinned by the golden vectors in test/engine) is shared.
 */
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { expect } from "vitest";
import { AssignmentService, createClient, ExperimentService, Reason, type Client } from "assignment-client";
import { hashV1 } from "../../src/engine/hash.js";

export { status };

// ------------------------------------------------------------------ SPEC formulas

/** `H(unit_id + ":" + salt) mod 10000`. */
export const specVariantBucket = (unitId: string, salt: string): number => hashV1(`${unitId}:${salt}`) % 10_000;

/** `H(unit_id + ":" + salt + ":rollout") mod 10000`. */
export const specRolloutBucket = (unitId: string, salt: string): number => hashV1(`${unitId}:${salt}:rollout`) % 10_000;

/** `H(unit_id + ":" + namespace_salt) mod segments`. */
export const specSegment = (unitId: string, nsSalt: string, segments: number): number => hashV1(`${unitId}:${nsSalt}`) % segments;

export interface WeightedVariant {
  key: string;
  weight: number;
}

/** The first variant i, in order, with bucket < weight_0 + … + weight_i. */
export function specVariant(unitId: string, salt: string, variants: readonly WeightedVariant[]): string {
  const bucket = specVariantBucket(unitId, salt);
  let cumulative = 0;
  for (const v of variants) {
    cumulative += v.weight;
    if (bucket < cumulative) return v.key;
  }
  throw new Error(`weights sum to ${cumulative}, bucket ${bucket} falls outside`);
}

/** Enrolled by the rollout: rollout bucket < rollout. */
export const specInRollout = (unitId: string, salt: string, rollout: number): boolean => specRolloutBucket(unitId, salt) < rollout;

// ------------------------------------------------------------------ statistics (independent)

/** Pearson chi-square of counts against weight shares; zero-weight variants take no part. */
export function chiSquareOf(counts: readonly number[], weights: readonly number[]): { chi: number; df: number } {
  const total = counts.reduce((a, c, i) => (weights[i] > 0 ? a + c : a), 0);
  const wsum = weights.reduce((a, b) => a + b, 0);
  let chi = 0;
  let cells = 0;
  counts.forEach((c, i) => {
    if (weights[i] <= 0) return;
    cells++;
    const e = (total * weights[i]) / wsum;
    chi += (c - e) ** 2 / e;
  });
  return { chi, df: cells - 1 };
}

/** Exact upper tail of chi-square for an EVEN number of degrees of freedom:
 *  Q = exp(-x/2) · Σ_{i < df/2} (x/2)^i / i!. */
export function chiSquarePValueEvenDf(x: number, df: number): number {
  if (df % 2 !== 0 || df <= 0) throw new Error("even df only");
  let term = 1;
  let sum = 1;
  for (let i = 1; i < df / 2; i++) {
    term *= x / 2 / i;
    sum += term;
  }
  return Math.exp(-x / 2) * sum;
}

// ------------------------------------------------------------------ gRPC

export interface GrpcFailure {
  code: status;
  details: string;
}

/** Awaits a call that must fail and returns its status code and details. */
export async function failure(call: Promise<unknown>): Promise<GrpcFailure> {
  try {
    await call;
  } catch (err) {
    const e = err as { code?: unknown; details?: unknown };
    if (typeof e.code !== "number") throw err;
    return { code: e.code as status, details: String(e.details ?? "") };
  }
  throw new Error("the call succeeded but was expected to fail");
}

/** Expects the call to fail with `code` and its details to name every string of `mentions`. */
export async function expectFailure(call: Promise<unknown>, code: status, ...mentions: (string | RegExp)[]): Promise<GrpcFailure> {
  const f = await failure(call);
  expect(status[f.code], `details: ${f.details}`).toBe(status[code]);
  for (const m of mentions) {
    if (typeof m === "string") expect(f.details).toContain(m);
    else expect(f.details).toMatch(m);
  }
  return f;
}

/** A pair of clients with their own connection (no subchannel shared with other clients). */
export function separateClients(address: string) {
  const channelOptions = { "grpc.use_local_subchannel_pool": 1 };
  return {
    assignments: createClient(AssignmentService, address, { timeoutMs: 30_000, channelOptions }) as Client<typeof AssignmentService>,
    experiments: createClient(ExperimentService, address, { timeoutMs: 30_000, channelOptions }) as Client<typeof ExperimentService>,
  };
}

export const ENROLLED = new Set([Reason.OVERRIDE, Reason.STICKY, Reason.NEW]);

// ------------------------------------------------------------------ PostgreSQL, read directly

export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(
  databaseUrl: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** unit id -> { variant key, source } of every stored assignment of an experiment. */
export async function storedAssignments(
  databaseUrl: string,
  experimentKey: string,
): Promise<Map<string, { variant: string; source: number; version: bigint }>> {
  const rows = await sql<{ unit_id: string; variant: string; source: number; version: string }>(
    databaseUrl,
    `SELECT a.unit_id, v->>'key' AS variant, a.source, a.version::text AS version
       FROM assignments a
       JOIN experiments e ON e.id = a.experiment_id
       JOIN LATERAL jsonb_array_elements(e.variants) v ON (v->>'id')::int = a.variant
      WHERE e.key = $1`,
    [experimentKey],
  );
  return new Map(rows.map((r) => [r.unit_id, { variant: r.variant, source: r.source, version: BigInt(r.version) }]));
}

export const databaseNameOf = (url: string): string => decodeURIComponent(new URL(url).pathname.slice(1));

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or `ms` pass; returns whether it became true. */
export async function eventually(probe: () => Promise<boolean>, ms: number, stepMs = 25): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return true;
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
}

export const units = (prefix: string, n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `${prefix}${from + i}`);

/** Samples of a Prometheus text exposition: `name{labels}` -> value. */
export async function scrapeMetrics(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return samples;
}
