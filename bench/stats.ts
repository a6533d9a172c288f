/** Latency statistics of one measured phase. All times in milliseconds. */
export interface Summary {
  /** Calls measured. */
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  /** Wall-clock time of the whole phase, checks between calls included. */
  wallMs: number;
  /** Calls per second over the phase (one call in flight at a time). */
  callsPerSecond: number;
}

/** Nearest-rank percentile of ascending `sorted` (p in 0..100): the smallest sample such that at
 * least p% of the samples are less than or equal to it. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n - 1, Math.max(0, rank - 1))];
}

export function summarize(samplesMs: readonly number[], wallMs: number): Summary {
  const sorted = Float64Array.from(samplesMs).sort();
  const n = sorted.length;
  let sum = 0;
  for (const x of sorted) sum += x;
  return {
    n,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: n ? sum / n : Number.NaN,
    min: n ? sorted[0] : Number.NaN,
    max: n ? sorted[n - 1] : Number.NaN,
    wallMs,
    callsPerSecond: wallMs > 0 ? (n * 1000) / wallMs : Number.NaN,
  };
}

/** "1.23 ms", "0.456 ms", "12.3 ms", "—" for a missing value. */
export function ms(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return "—";
  if (x < 1) return `${x.toFixed(3)} ms`;
  if (x < 10) return `${x.toFixed(2)} ms`;
  return `${x.toFixed(1)} ms`;
}
