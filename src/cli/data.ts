import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import type { Readable, Writable } from "node:stream";
import { toJson } from "@bufbuild/protobuf";
import { AssignmentSchema, ImportPolicy, Layer, Reason } from "assignment-client";
import * as grpc from "@grpc/grpc-js";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import type { ImportAssignmentsRequestSchema } from "assignment-client";
import { assignCohort, maxBatch } from "assignment-client";
import { type Context, UsageError } from "./context.js";
import { csvLine, readCsv, readLines } from "./csv.js";
import { count, parseCount, parseJsonObject, reasonName, sourceName } from "./format.js";
import { Progress } from "./progress.js";
import { DEFAULT_EXPORT_BATCH, MAX_BULK_UNITS } from "assignment-client/limits";

/** A file to read, or stdin for "-" / none. */
function input(file: string | undefined): Readable {
  if (file === undefined || file === "-") return process.stdin;
  const stream = createReadStream(file);
  return stream;
}

/** Opens a file to read, failing as a usage error when it cannot be. */
export async function openInput(file: string | undefined): Promise<Readable> {
  const stream = input(file);
  if (stream !== process.stdin) {
    await Promise.race([once(stream, "open"), once(stream, "error")]).catch((err: Error) => {
      throw new UsageError(`cannot read ${file}: ${err.message}`);
    });
  }
  return stream;
}

/** A writer with backpressure onto a file, or stdout for "-" / none. */
export class Output {
  readonly stream: Writable;
  constructor(file: string | undefined) {
    this.stream = file === undefined || file === "-" ? process.stdout : createWriteStream(file);
  }
  async write(text: string): Promise<void> {
    if (!this.stream.write(text)) await once(this.stream, "drain");
  }
  async end(): Promise<void> {
    if (this.stream === process.stdout) return;
    this.stream.end();
    await once(this.stream, "finish");
  }
}

export async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const _ of readLines(await openInput(file))) n++;
  return n;
}

export async function assignOne(
  ctx: Context,
  experimentKey: string,
  unitId: string,
  o: {
    unitType?: string;
    dryRun?: boolean;
    explain?: boolean;
    attributes?: string;
    params?: boolean;
    json?: boolean;
    allowUnknown?: boolean;
  },
) {
  const { assignment } = await ctx.assignments.assign({
    experimentKey,
    unitId,
    unitType: o.unitType ?? "",
    attributes: o.attributes === undefined ? undefined : (parseJsonObject("--attributes", o.attributes) as JsonObject),
    options: { dryRun: o.dryRun ?? false, explain: o.explain ?? false, includeParams: o.params ?? false },
  });
  const a = assignment!;
  if (o.json) process.stdout.write(JSON.stringify(toJson(AssignmentSchema, a), null, 2) + "\n");
  else printAssignment(a, unitId);
  if (a.reason === Reason.UNKNOWN_EXPERIMENT && !o.allowUnknown) throw unknownExperiments([experimentKey]);
}

/** The refusal of a command naming experiments that do not exist (a typo, usually). */
function unknownExperiments(keys: string[]): UsageError {
  const list = keys.map((k) => `"${k}"`).join(", ");
  return new UsageError(
    `no experiment ${list} on this server (check the spelling: assignment experiments list); --allow-unknown answers such units UNKNOWN_EXPERIMENT and exits 0`,
  );
}

function printAssignment(a: NonNullable<Awaited<ReturnType<Context["assignments"]["assign"]>>["assignment"]>, unitId: string) {
  const lines = [
    `${a.experimentKey} / ${unitId}: ${a.variantKey || "(no variant)"}`,
    `reason    ${reasonName(a.reason)}`,
    `enrolled  ${a.enrolled}`,
    `stored    ${a.stored}`,
    `version   ${a.experimentVersion}`,
  ];
  if (a.explanation) {
    const e = a.explanation;
    lines.push(
      `rule      ${RULE_TEXT[a.reason] ?? "-"}`,
      `buckets   variant ${e.variantBucket}, rollout ${e.rolloutBucket}${e.segment !== undefined ? `, segment ${e.segment}` : ""}`,
      `layer     ${LAYER_TEXT[e.layer] ?? Layer[e.layer] ?? String(e.layer)}`,
    );
  }
  if (a.params) lines.push(`params    ${JSON.stringify(a.params)}`);
  process.stdout.write(lines.join("\n") + "\n");
}

/** Which rule of SPEC.md "Evaluating one unit for one experiment" decided, by reason. */
const RULE_TEXT: Partial<Record<Reason, string>> = {
  [Reason.UNKNOWN_EXPERIMENT]: "1 (no such experiment)",
  [Reason.INVALID_UNIT]: "2 (invalid unit id)",
  [Reason.UNIT_TYPE_MISMATCH]: "2 (not the experiment's unit type)",
  [Reason.OVERRIDE]: "3 (an override)",
  [Reason.NOT_RUNNING]: "4 (not running)",
  [Reason.WINNER]: "4 (stopped with a winner)",
  [Reason.STICKY]: "5 (its stored assignment)",
  [Reason.PAUSED]: "6 (paused: nobody new)",
  [Reason.HOLDOUT]: "7 (held out by a holdout)",
  [Reason.NOT_TARGETED]: "8 (the targeting condition is not true for its attributes)",
  [Reason.NOT_IN_NAMESPACE]: "9 (its namespace segment is another experiment's)",
  [Reason.NOT_IN_ROLLOUT]: "10 (outside the rollout)",
  [Reason.NEW]: "11 (hashed now)",
};

/** Which layer answered, as `assign --explain` prints it. */
const LAYER_TEXT: Partial<Record<Layer, string>> = {
  [Layer.MEMORY]: "MEMORY (the server's in-process cache)",
  [Layer.REDIS]: "REDIS (the shared cache)",
  [Layer.POSTGRES]: "POSTGRES (stored, read from the database)",
  [Layer.COMPUTED]: "COMPUTED (hashed now, per SPEC.md)",
};

export interface CohortCommandOptions {
  file?: string;
  output?: string;
  format: string;
  unitType?: string;
  batchSize?: string;
  dryRun?: boolean;
  allowUnknown?: boolean;
}

/** Assigns every id of the file (or stdin), one per line, through StreamAssign. */
export async function cohort(ctx: Context, experimentKeys: string[], o: CohortCommandOptions) {
  if (o.format !== "csv" && o.format !== "jsonl") throw new UsageError(`--format: "${o.format}" is not csv or jsonl`);
  if (experimentKeys.length > 100) throw new UsageError("at most 100 experiments a cohort");
  const batchSize = o.batchSize === undefined ? maxBatch(experimentKeys.length) : parseCount("--batch-size", o.batchSize);
  const fromFile = o.file !== undefined && o.file !== "-";
  const total = fromFile ? await countLines(o.file!) : undefined;
  if (!fromFile && process.stdin.isTTY) process.stderr.write("reading unit ids from stdin, one per line (end with Ctrl-D) ...\n");
  const ids = readLines(await openInput(o.file));
  const out = new Output(o.output);
  const progress = new Progress({ unit: "units", total, enabled: ctx.options.progress && process.stderr.isTTY === true });
  const jsonl = o.format === "jsonl";
  if (!jsonl) await out.write(csvLine(["unit_id", "experiment_key", "variant_key", "reason", "enrolled", "stored"]));
  try {
    await assignCohort(
      ctx.assignments,
      ids,
      { experimentKeys, unitType: o.unitType, options: { dryRun: o.dryRun ?? false }, batchSize },
      async (batch, columns) => {
        // An unknown experiment answers every unit UNKNOWN_EXPERIMENT: refuse at the first batch
        // rather than write a row per unit of a typo.
        if (!o.allowUnknown && batch.length > 0) {
          const unknown = columns.filter((c) => c.reasons[0] === Reason.UNKNOWN_EXPERIMENT).map((c) => c.experimentKey);
          if (unknown.length > 0) throw unknownExperiments(unknown);
        }
        let text = "";
        for (let i = 0; i < batch.length; i++) {
          for (const c of columns) {
            const variant = c.legend[c.variantIndexes[i]] ?? "";
            const reason = reasonName(c.reasons[i]);
            text += jsonl
              ? JSON.stringify({
                  unit_id: batch[i],
                  experiment_key: c.experimentKey,
                  variant_key: variant,
                  reason,
                  enrolled: c.enrolled[i],
                  stored: c.stored[i],
                }) + "\n"
              : csvLine([batch[i], c.experimentKey, variant, reason, String(c.enrolled[i]), String(c.stored[i])]);
          }
        }
        await out.write(text);
        progress.add(batch.length);
      },
    );
  } finally {
    progress.stop(ctx.options.progress ? "assigned" : undefined);
  }
  await out.end();
}

/** Rows per ImportAssignments message: as many as a BulkAssign takes ids. */
const IMPORT_MESSAGE_ROWS = MAX_BULK_UNITS;

export interface ImportOptions {
  experiment?: string;
  overwrite?: boolean;
  skipInvalid?: boolean;
  json?: boolean;
}

/**
 * Imports a CSV with a header naming unit_id, variant_key and experiment_key (--experiment sets the
 * experiment of every row instead); other columns (an export's source, version) are ignored. All
 * or nothing.
 */
export async function importCsv(ctx: Context, file: string | undefined, o: ImportOptions) {
  const fromFile = file !== undefined && file !== "-";
  let total: number | undefined;
  if (fromFile) {
    total = -1; // the header
    for await (const _ of readCsv(await openInput(file))) total++;
  }
  const records = readCsv(await openInput(file));
  const first = await records.next();
  if (first.done) throw new UsageError("the import file is empty: it needs a header line naming unit_id,variant_key[,experiment_key]");
  const header = first.value.map((h) => h.trim().toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const [unitCol, variantCol, experimentCol] = [col("unit_id"), col("variant_key"), col("experiment_key")];
  if (unitCol < 0 || variantCol < 0) throw new UsageError(`the header must name unit_id and variant_key (got ${first.value.join(",")})`);
  if (experimentCol < 0 && !o.experiment) throw new UsageError("the header names no experiment_key column: pass --experiment <key>");

  const progress = new Progress({
    unit: "rows",
    total: total !== undefined && total >= 0 ? total : undefined,
    enabled: ctx.options.progress && process.stderr.isTTY === true,
  });
  async function* requests(): AsyncGenerator<MessageInitShape<typeof ImportAssignmentsRequestSchema>> {
    let rows: { experimentKey: string; unitId: string; variantKey: string }[] = [];
    let setup: MessageInitShape<typeof ImportAssignmentsRequestSchema>["setup"] = {
      policy: o.overwrite ? ImportPolicy.OVERWRITE : ImportPolicy.SKIP_EXISTING,
      skipInvalid: o.skipInvalid ?? false,
    };
    for await (const rec of records) {
      rows.push({
        experimentKey: o.experiment ?? rec[experimentCol] ?? "",
        unitId: rec[unitCol] ?? "",
        variantKey: rec[variantCol] ?? "",
      });
      if (rows.length >= IMPORT_MESSAGE_ROWS) {
        yield { setup, rows };
        setup = undefined;
        progress.add(rows.length);
        rows = [];
      }
    }
    if (rows.length > 0 || setup) yield { setup, rows };
    progress.add(rows.length);
    // Every row is sent; the server now stores them all in one transaction.
    progress.note("committing…");
  }
  let r: Awaited<ReturnType<typeof ctx.experiments.importAssignments>>;
  try {
    r = await ctx.experiments.importAssignments(requests(), { timeoutMs: 0 });
  } catch (err) {
    throw inCliTerms(err, fromFile ? file! : "stdin");
  } finally {
    progress.stop(ctx.options.progress ? "sent" : undefined);
  }
  if (o.json) {
    process.stdout.write(
      JSON.stringify(
        {
          received: Number(r.received),
          imported: Number(r.imported),
          skipped: Number(r.skipped),
          invalid: Number(r.invalid),
          errors: r.errors.map((e) => ({ position: Number(e.position), message: e.message })),
        },
        null,
        2,
      ) + "\n",
    );
    return;
  }
  let text = `received ${count(r.received)} rows: ${count(r.imported)} imported, ${count(r.skipped)} skipped (already stored, or repeated units), ${count(r.invalid)} invalid\n`;
  for (const e of r.errors) text += `  row ${Number(e.position) + 1} (line ${Number(e.position) + 2}): ${e.message}\n`;
  process.stdout.write(text);
}

/**
 * The server's refusal of an import, in the command's terms: its `rows[N]` (the N-th row sent,
 * from 0) is line N + 2 of the file (after the header), and `setup.skip_invalid` is
 * `--skip-invalid`, `setup.policy` `--overwrite`.
 */
function inCliTerms(err: unknown, source: string): unknown {
  const e = err as Partial<grpc.ServiceError>;
  if (e.code !== grpc.status.INVALID_ARGUMENT || typeof e.details !== "string") return err;
  const details = e.details
    .replace(/^rows\[(\d+)\]/, (_, n: string) => `${source} line ${Number(n) + 2} (data row ${Number(n) + 1})`)
    .replace(/set setup\.skip_invalid/g, "pass --skip-invalid")
    .replace(/setup\.skip_invalid/g, "--skip-invalid")
    .replace(/setup\.policy/g, "--overwrite");
  return Object.assign(err as object, { details, message: `${e.code} INVALID_ARGUMENT: ${details}` });
}

/** Writes every stored assignment of an experiment as CSV (the format `import` reads). */
export async function exportCsv(ctx: Context, experimentKey: string, o: { output?: string; batchSize?: string }) {
  const batchSize = o.batchSize === undefined ? DEFAULT_EXPORT_BATCH : parseCount("--batch-size", o.batchSize);
  let total: number | undefined;
  if (ctx.options.progress && process.stderr.isTTY) {
    const s = await ctx.experiments.getExperimentStats({ key: experimentKey });
    total = s.variants.reduce((a, v) => a + Number(v.units + v.overrides + v.imported), 0);
  }
  const out = new Output(o.output);
  const progress = new Progress({ unit: "rows", total, enabled: ctx.options.progress && process.stderr.isTTY === true });
  try {
    await out.write(csvLine(["experiment_key", "unit_id", "variant_key", "source", "version"]));
    for await (const page of ctx.experiments.exportAssignments({ experimentKey, batchSize }, { timeoutMs: 0 })) {
      let text = "";
      for (let i = 0; i < page.unitIds.length; i++) {
        text += csvLine([
          page.experimentKey,
          page.unitIds[i],
          page.legend[page.variantIndexes[i]] ?? "",
          sourceName(page.sources[i]),
          String(page.versions[i]),
        ]);
      }
      await out.write(text);
      progress.add(page.unitIds.length);
    }
  } finally {
    progress.stop(ctx.options.progress ? "exported" : undefined);
  }
  await out.end();
}
