import { useEffect, useState } from "preact/hooks";
import type { GetExperimentStatsResponse } from "../../gen/ts/assignment/v1/experiment_service_pb.js";
import { experiments } from "./api.js";

/** At most this many stats calls at once from the list (each counts an experiment's stored units). */
const PARALLEL = 4;
let running = 0;
const waiting: (() => void)[] = [];
async function limited<T>(call: () => Promise<T>): Promise<T> {
  if (running >= PARALLEL) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await call();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** The sample-ratio verdict in words: a mismatch when p < 0.001 (the server's threshold). */
export function srmWords(s: GetExperimentStatsResponse): string {
  if (s.totalUnits === 0n) return "no units yet";
  return s.sampleRatioMismatch
    ? `sample ratio mismatch (p = ${s.pValue.toPrecision(3)})`
    : `split as expected (p = ${s.pValue.toPrecision(3)})`;
}

export function SrmBadge({ experimentKey, version }: { experimentKey: string; version: bigint }) {
  const [stats, setStats] = useState<GetExperimentStatsResponse | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    limited(() => experiments.getExperimentStats({ key: experimentKey }))
      .then((s) => live && setStats(s))
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
    };
  }, [experimentKey, version]);
  if (failed) return <span class="badge">?</span>;
  if (!stats) return <span class="badge muted">…</span>;
  if (stats.totalUnits === 0n) return <span class="badge muted">no units</span>;
  return stats.sampleRatioMismatch ? (
    <span class="badge bad" title={srmWords(stats)}>
      SRM
    </span>
  ) : (
    <span class="badge good" title={srmWords(stats)}>
      OK
    </span>
  );
}
