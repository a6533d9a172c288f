import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef } from "preact/hooks";
import type { GetExperimentStatsResponse } from "../../gen/ts/assignment/v1/experiment_service_pb.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

/** Observed against expected share of each variant, as bars (Chart.js); the numbers are in the table beside it. */
export function SplitChart({ stats }: { stats: GetExperimentStatsResponse }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<"bar"> | null>(null);
  useEffect(() => {
    chart.current = new Chart(canvas.current!, {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { callback: (v) => `${v}%` }, title: { display: true, text: "share of units" } } },
        plugins: {
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${Number(c.parsed.y).toFixed(2)}%` } },
        },
      },
    });
    return () => chart.current?.destroy();
  }, []);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = stats.variants.map((v) => v.variantKey);
    c.data.datasets = [
      { label: "observed", data: stats.variants.map((v) => v.observedShare * 100), backgroundColor: "#2f6fdf" },
      { label: "expected", data: stats.variants.map((v) => v.expectedShare * 100), backgroundColor: "#b9c3d3" },
    ];
    c.update();
  }, [stats]);
  const summary = stats.variants
    .map((v) => `${v.variantKey}: ${(v.observedShare * 100).toFixed(1)}% observed, ${(v.expectedShare * 100).toFixed(1)}% expected`)
    .join("; ");
  return (
    <div class="chart">
      <canvas ref={canvas} role="img" aria-label={`Observed and expected share per variant. ${summary}`} />
    </div>
  );
}
