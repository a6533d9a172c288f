/**
 * `npm run demo`: the whole thing on one machine with nothing installed. Starts the server on the
 * embedded PostgreSQL (PGlite, in a temporary folder) with the in-process cache, creates two
 * independent experiments and a namespace holding two mutually exclusive ones, assigns a cohort of
 * 100,000 units to all four through one StreamAssign stream (with a progress bar), and shows:
 * the split per variant, the overlap of the independent pair (2x2 counts and a chi-square test of
 * independence), the overlap of the exclusive pair (none), and the sample-ratio check of each
 * experiment (GetExperimentStats). Removes everything afterwards.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AssignmentService, createClient, ExperimentService, ExperimentStatus } from "assignment-client";
import { chiSquareSurvival } from "../engine/sample-ratio.js";
import { createLogger } from "../logger.js";
import { startServer } from "../server.js";
import { srmVerdict } from "./admin.js";
import { assignCohort } from "assignment-client";
import { count, percent, table } from "./format.js";
import { Progress } from "./progress.js";

const COHORT = Number(process.env.DEMO_UNITS ?? 100_000);
const out = (s = "") => process.stdout.write(s + "\n");

const INDEPENDENT = ["demo-button-color", "demo-free-shipping"] as const;
const EXCLUSIVE = ["demo-price-low", "demo-price-high"] as const;
const ALL = [...INDEPENDENT, ...EXCLUSIVE];

async function demo(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "assignment-demo-"));
  const started = performance.now();
  out(`Starting the server: embedded PostgreSQL (PGlite) in ${dir}, in-process cache, no Redis ...`);
  const server = await startServer({
    pgliteDataDir: path.join(dir, "pglite"),
    port: 0,
    insecure: true,
    logger: createLogger(process.env.LOG_LEVEL ?? "error"),
  });
  const admin = createClient(ExperimentService, server.address, { timeoutMs: 30_000 });
  const assign = createClient(AssignmentService, server.address);
  try {
    out(
      `Serving on ${server.address} (ready in ${((performance.now() - started) / 1000).toFixed(1)} s), in insecure development mode: no tokens.\n`,
    );

    await admin.createExperiment({
      key: "demo-button-color",
      variants: [
        { key: "blue", weight: 5000 },
        { key: "green", weight: 5000, params: { color: "#0a0" } },
      ],
      status: ExperimentStatus.RUNNING,
      description: "independent of demo-free-shipping",
    });
    await admin.createExperiment({
      key: "demo-free-shipping",
      variants: [
        { key: "off", weight: 7000 },
        { key: "on", weight: 3000 },
      ],
      status: ExperimentStatus.RUNNING,
      description: "independent of demo-button-color",
    });
    await admin.createNamespace({ key: "demo-pricing", segments: 10_000 });
    for (const key of EXCLUSIVE) {
      await admin.createExperiment({
        key,
        variants: [
          { key: "control", weight: 5000 },
          { key: "treatment", weight: 5000 },
        ],
        status: ExperimentStatus.RUNNING,
      });
    }
    await admin.allocateSegments({ namespaceKey: "demo-pricing", experimentKey: "demo-price-low", segments: 4_000 });
    await admin.allocateSegments({ namespaceKey: "demo-pricing", experimentKey: "demo-price-high", segments: 4_000 });
    out("Experiments:");
    out("  demo-button-color   blue 50% / green 50%");
    out("  demo-free-shipping  off 70% / on 30%          (independent of demo-button-color)");
    out("  demo-price-low      control 50% / treatment 50%, 40% of namespace demo-pricing");
    out("  demo-price-high     control 50% / treatment 50%, 40% of namespace demo-pricing (exclusive with demo-price-low)\n");

    // One stream; per experiment, the legend index answered for each unit and whether it is enrolled.
    const answers = ALL.map(() => new Uint8Array(COHORT));
    const enrolled = ALL.map(() => new Uint8Array(COHORT));
    const legends: string[][] = ALL.map(() => []);
    let offset = 0;
    function* ids() {
      for (let i = 1; i <= COHORT; i++) yield `user-${String(i).padStart(6, "0")}`;
    }
    out(`Assigning ${count(COHORT)} units to all four experiments through StreamAssign ...`);
    const progress = new Progress({ unit: "units", total: COHORT });
    await assignCohort(assign, ids(), { experimentKeys: ALL }, (batch, columns) => {
      columns.forEach((c, j) => {
        legends[j] = c.legend;
        answers[j].set(c.variantIndexes, offset);
        for (let i = 0; i < batch.length; i++) enrolled[j][offset + i] = c.enrolled[i] ? 1 : 0;
      });
      offset += batch.length;
      progress.add(batch.length);
    });
    progress.stop("assigned");
    out();

    out("Split per variant (enrolled units; the others get the default variant, unenrolled):");
    const rows: (string | number)[][] = [];
    ALL.forEach((key, j) => {
      const counts = new Array<number>(legends[j].length).fill(0);
      let inside = 0;
      for (let i = 0; i < COHORT; i++) {
        if (!enrolled[j][i]) continue;
        counts[answers[j][i]]++;
        inside++;
      }
      legends[j].forEach((variant, v) => {
        if (v > 0) rows.push([key, variant, count(counts[v]), percent(counts[v] / inside)]);
      });
      if (inside < COHORT) rows.push([key, "(not enrolled)", count(COHORT - inside), ""]);
    });
    out(indent(table(["EXPERIMENT", "VARIANT", "UNITS", "SHARE"], rows, [2, 3])));
    out();

    out("Overlap of the independent pair (units in each combination):");
    const [a, b] = [answers[0], answers[1]];
    const [la, lb] = [legends[0], legends[1]];
    const cells = [0, 0, 0, 0];
    for (let i = 0; i < COHORT; i++) cells[(a[i] - 1) * 2 + (b[i] - 1)]++;
    out(
      indent(
        table(
          ["", `${INDEPENDENT[1]}=${lb[1]}`, `${INDEPENDENT[1]}=${lb[2]}`],
          [
            [`${INDEPENDENT[0]}=${la[1]}`, count(cells[0]), count(cells[1])],
            [`${INDEPENDENT[0]}=${la[2]}`, count(cells[2]), count(cells[3])],
          ],
          [1, 2],
        ),
      ),
    );
    const { chi, p } = independence(cells);
    out(
      `  chi-square test of independence: chi2 = ${chi.toFixed(3)}, df = 1, p = ${p.toFixed(4)} -> ${p >= 0.001 ? "no evidence of dependence: independent, as they should be" : "NOT independent: the assignments are correlated"}\n`,
    );

    out("Overlap of the exclusive pair (namespace demo-pricing, enrolled units):");
    const n = { onlyFirst: 0, onlySecond: 0, both: 0, neither: 0 };
    for (let i = 0; i < COHORT; i++) {
      const [e1, e2] = [enrolled[2][i], enrolled[3][i]];
      if (e1 && e2) n.both++;
      else if (e1) n.onlyFirst++;
      else if (e2) n.onlySecond++;
      else n.neither++;
    }
    out(
      `  ${EXCLUSIVE[0]} only: ${count(n.onlyFirst)}, ${EXCLUSIVE[1]} only: ${count(n.onlySecond)}, both: ${count(n.both)}, neither: ${count(n.neither)}`,
    );
    out(`  -> ${n.both === 0 ? "mutually exclusive, as they should be" : "OVERLAP: the namespace failed"}\n`);

    out("Sample-ratio check (GetExperimentStats):");
    for (const key of ALL) {
      const s = await admin.getExperimentStats({ key });
      const split = s.variants.map((v) => `${v.variantKey} ${percent(v.observedShare)} (expected ${percent(v.expectedShare)})`).join(", ");
      out(`  ${key}: ${count(s.totalUnits)} units stored; ${split}`);
      out(`    ${srmVerdict(s)}`);
    }
    out(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } finally {
    admin.close();
    assign.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const indent = (text: string) => text.replace(/^/gm, "  ").replace(/\s+$/, "");

/** Pearson's chi-square test of independence of a 2x2 table [n11, n12, n21, n22] (df = 1). */
function independence(cells: number[]): { chi: number; p: number } {
  const n = cells.reduce((s, c) => s + c, 0);
  const rows = [cells[0] + cells[1], cells[2] + cells[3]];
  const cols = [cells[0] + cells[2], cells[1] + cells[3]];
  let chi = 0;
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 2; c++) {
      const expected = (rows[r] * cols[c]) / n;
      if (expected > 0) chi += (cells[r * 2 + c] - expected) ** 2 / expected;
    }
  }
  return { chi, p: chiSquareSurvival(chi, 1) };
}

demo().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
