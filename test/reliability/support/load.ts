/**
 * Bounded load for the reliability tests: N workers loop over a body until told to stop, or until
 * their call budget or the time bound runs out, whichever comes first. Every loop here is bounded
 * in count and time, so a test stops by itself whatever the server does.
 */
import { status } from "@grpc/grpc-js";
import { AssignmentService, createClient, ExperimentService, type Client } from "assignment-client";

export { status };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Load {
  /** Asks every worker to stop after its current iteration; resolves once all have. */
  stop(): Promise<LoadResult>;
  /** Resolves when every worker ended (stopped, budget or time used up). */
  done: Promise<LoadResult>;
  iterations(): number;
}

export interface LoadResult {
  iterations: number;
  elapsedMs: number;
  /** Why the workers ended: "stopped", "budget" or "time". */
  endedBy: string[];
}

/**
 * Starts `workers` loops of `body(worker, iteration)`. A body that throws ends the whole load with
 * that error (assertions belong in the body or after it; expected gRPC failures must be caught
 * and recorded by the body itself).
 */
export function startLoad(
  workers: number,
  bounds: { maxIterationsPerWorker: number; maxMs: number },
  body: (worker: number, iteration: number) => Promise<void>,
): Load {
  let stopping = false;
  let count = 0;
  const started = Date.now();
  const deadline = started + bounds.maxMs;
  const loops = Array.from({ length: workers }, async (_, w) => {
    let i = 0;
    for (;;) {
      if (stopping) return "stopped";
      if (i >= bounds.maxIterationsPerWorker) return "budget";
      if (Date.now() > deadline) return "time";
      await body(w, i++);
      count++;
    }
  });
  const done = Promise.all(loops).then((endedBy) => ({ iterations: count, elapsedMs: Date.now() - started, endedBy }));
  return {
    done,
    iterations: () => count,
    stop: () => {
      stopping = true;
      return done;
    },
  };
}

/** The gRPC status code of a failed call (-1 when it is no gRPC error). */
export function codeOf(err: unknown): number {
  const c = (err as { code?: unknown })?.code;
  return typeof c === "number" ? c : -1;
}

export const codeName = (c: number): string => status[c] ?? `not a gRPC status (${c})`;

/** Percentiles of a list of numbers (ms); NaN when empty. */
export function percentiles(xs: readonly number[], ps: readonly number[] = [50, 99, 100]): Record<string, number> {
  const s = [...xs].sort((a, b) => a - b);
  const out: Record<string, number> = {};
  for (const p of ps) out[`p${p}`] = s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  return out;
}

/** Polls `probe` every `stepMs` until it returns true, for at most `maxMs`; returns how long it
 * took, or undefined when it never did. Probe errors count as false. */
export async function timeUntil(probe: () => Promise<boolean>, maxMs: number, stepMs = 50): Promise<number | undefined> {
  const started = Date.now();
  for (let n = 0; n < 100_000; n++) {
    if (await probe().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > maxMs) return undefined;
    await sleep(stepMs);
  }
  return undefined;
}

/** Collects mismatches, keeping the first few for the assertion message. */
export class Mismatches {
  count = 0;
  readonly first: string[] = [];
  add(what: string): void {
    if (this.count++ < 10) this.first.push(what);
  }
}

/** A deterministic pseudo-random generator (xorshift32), so runs are reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Clients on their own connection, without client retries: the tests see every status the
 * server sends, none hidden by a retry. */
export function rawClients(address: string, timeoutMs = 30_000) {
  const opts = { timeoutMs, retry: false as const, channelOptions: { "grpc.use_local_subchannel_pool": 1 } };
  return {
    assignments: createClient(AssignmentService, address, opts) as Client<typeof AssignmentService>,
    experiments: createClient(ExperimentService, address, opts) as Client<typeof ExperimentService>,
    close() {
      this.assignments.close();
      this.experiments.close();
    },
  };
}

/** A deterministic shuffle (Fisher-Yates over rng(seed)). */
export function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  const next = rng(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
