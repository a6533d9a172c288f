/** `assignment cohorts upload|list|show|export|delete`: stored cohorts (CohortService). */
import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { type Cohort, CohortSchema, CohortService } from "assignment-client";
import { MAX_BULK_UNITS } from "assignment-client/limits";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Readable } from "node:stream";
import { type Context, UsageError } from "./context.js";
import { readCsv, readLines } from "./csv.js";
import { countLines, openInput, Output } from "./data.js";
import { count, parseCount, table } from "./format.js";
import { Progress } from "./progress.js";

type Run = <A extends unknown[]>(body: (ctx: Context, ...args: A) => Promise<void>) => (...args: unknown[]) => Promise<void>;

const cohortRow = (c: Cohort) => [
  c.name,
  c.unitType,
  count(c.size),
  c.createTime ? new Date(Number(c.createTime.seconds) * 1000).toISOString() : "",
  c.createdBy,
];
const printJson = (value: unknown) => process.stdout.write(JSON.stringify(value, null, 2) + "\n");

export async function uploadCohort(
  ctx: Context,
  name: string,
  file: string | undefined,
  o: { unitType?: string; replace?: boolean; variants?: boolean; jsonl?: boolean; json?: boolean },
): Promise<void> {
  const fromFile = file !== undefined && file !== "-";
  let total = fromFile ? await countLines(file!) : undefined;
  if (!fromFile && process.stdin.isTTY) {
    process.stderr.write(
      `reading ${o.jsonl ? "JSON lines" : o.variants ? "unit_id,variant_key rows" : "unit ids, one per line,"} from stdin (end with Ctrl-D) ...\n`,
    );
  }
  const rows = o.jsonl
    ? jsonRows(readLines(await openInput(file)), o.variants ?? false)
    : o.variants
      ? await variantRows(await openInput(file))
      : idRows(readLines(await openInput(file)));
  if (o.variants && !o.jsonl && total !== undefined) total--; // the header
  const progress = new Progress({
    unit: o.variants ? "rows" : "ids",
    total,
    enabled: ctx.options.progress && process.stderr.isTTY === true,
  });
  const setup = { name, unitType: o.unitType ?? "", replace: o.replace ?? false, withVariants: o.variants ?? false };
  async function* messages() {
    let ids: string[] = [];
    let variants: string[] = [];
    // Per-unit attributes go positional to a message's ids: one entry per id ({} for a unit with
    // none) when any unit of the message has some, none at all otherwise.
    let attributes: JsonObject[] = [];
    let anyAttributes = false;
    let first = true;
    const message = () => ({
      ...(first ? { setup } : {}),
      unitIds: ids,
      variantKeys: variants,
      unitAttributes: anyAttributes ? attributes : [],
    });
    for await (const [id, variant, attrs] of rows) {
      ids.push(id);
      if (variant !== undefined) variants.push(variant);
      attributes.push(attrs ?? {});
      if (attrs !== undefined && Object.keys(attrs).length > 0) anyAttributes = true;
      if (ids.length === MAX_BULK_UNITS) {
        yield message();
        progress.add(ids.length);
        first = false;
        ids = [];
        variants = [];
        attributes = [];
        anyAttributes = false;
      }
    }
    yield message();
    progress.add(ids.length);
  }
  try {
    const r = await ctx.client(CohortService).uploadCohort(messages());
    progress.stop(ctx.options.progress ? "uploaded" : undefined);
    if (o.json) return void printJson(toJson(CohortSchema, r.cohort!));
    const what = r.cohort!.hasVariants ? "rows" : "ids";
    process.stdout.write(
      `cohort ${r.cohort!.name}: ${count(r.cohort!.size)} ${what} (${count(r.received)} received, ${count(r.duplicates)} repeats dropped)\n`,
    );
  } catch (err) {
    progress.stop();
    throw err;
  }
}

type Row = [id: string, variant: string | undefined, attributes?: JsonObject];

/** Unit ids, one per line (blank lines skipped). */
async function* idRows(lines: AsyncIterable<string>): AsyncGenerator<Row> {
  for await (const line of lines) if (line !== "") yield [line, undefined];
}

/** JSON lines (blank lines skipped): `{"unit_id": "...", "attributes": {...}, "variant_key": "..."}`,
 * attributes optional (a unit's own attributes for targeting), variant_key required with
 * --variants and refused without it. A bad line stops the upload before anything is stored. */
async function* jsonRows(lines: AsyncIterable<string>, withVariants: boolean): AsyncGenerator<Row> {
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    const at = `line ${n}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new UsageError(`${at}: not JSON (${(err as Error).message})`);
    }
    if (!isObject(value)) throw new UsageError(`${at}: must be a JSON object with unit_id`);
    const { unit_id: id, attributes, variant_key: variant, ...rest } = value;
    const unknown = Object.keys(rest);
    if (unknown.length > 0) throw new UsageError(`${at}: unknown field "${unknown[0]}" (fields: unit_id, attributes, variant_key)`);
    if (typeof id !== "string") throw new UsageError(`${at}: unit_id must be a string`);
    if (attributes !== undefined && !isObject(attributes)) throw new UsageError(`${at}: attributes must be a JSON object`);
    if (withVariants && typeof variant !== "string") throw new UsageError(`${at}: variant_key must be a string (--variants)`);
    if (!withVariants && variant !== undefined) throw new UsageError(`${at}: variant_key is only for --variants`);
    yield [id, withVariants ? (variant as string) : undefined, attributes];
  }
}

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** (unit, variant) rows of a CSV whose header names unit_id and variant_key (other columns are
 * ignored, so an export of an experiment uploads as it is). */
async function variantRows(input: Readable): Promise<AsyncGenerator<Row>> {
  const records = readCsv(input);
  const first = await records.next();
  if (first.done) throw new UsageError("the file is empty: it needs a header line naming unit_id,variant_key");
  const header = first.value.map((h) => h.trim().toLowerCase());
  const [unitCol, variantCol] = [header.indexOf("unit_id"), header.indexOf("variant_key")];
  if (unitCol < 0 || variantCol < 0) throw new UsageError(`the header must name unit_id and variant_key (got ${first.value.join(",")})`);
  return (async function* () {
    for await (const rec of records) yield [rec[unitCol] ?? "", rec[variantCol] ?? ""] as Row;
  })();
}

export async function exportCohort(ctx: Context, name: string, o: { output?: string; batchSize?: string }): Promise<void> {
  const batchSize = o.batchSize === undefined ? 0 : parseCount("--batch-size", o.batchSize);
  const out = new Output(o.output);
  for await (const m of ctx.client(CohortService).exportCohort({ name, batchSize })) {
    let text = "";
    for (const id of m.unitIds) text += `${id}\n`;
    await out.write(text);
  }
  await out.end();
}

export function addCohortCommands(program: Command, run: Run): void {
  const cohorts = program.command("cohorts").description("stored cohorts: named lists of unit ids that jobs run over");
  cohorts
    .command("upload <name> [file]")
    .description("store a cohort from a file (or stdin) of unit ids, one per line; repeats are dropped; all or nothing")
    .option("--unit-type <type>", "the units' type (default user_id)")
    .option("--replace", "replace a cohort of that name")
    .option("--variants", "the file is CSV with a header naming unit_id and variant_key: a table for `jobs start import`")
    .option(
      "--jsonl",
      'the file is JSON lines, one unit a line: {"unit_id": "u1", "attributes": {"country": "FR"}}; attributes (optional) are the unit\'s own for targeting conditions of assign and warm jobs; with --variants each line also has "variant_key"',
    )
    .option("--json", "print JSON")
    .action(
      run(
        (
          ctx,
          name: string,
          file: string | undefined,
          o: { unitType?: string; replace?: boolean; variants?: boolean; jsonl?: boolean; json?: boolean },
        ) => uploadCohort(ctx, name, file, o),
      ),
    );
  cohorts
    .command("list")
    .description("list cohorts")
    .option("--json", "print JSON")
    .action(
      run(async (ctx, o: { json?: boolean }) => {
        const { cohorts: list } = await ctx.client(CohortService).listCohorts({});
        if (o.json) return void printJson(list.map((c) => toJson(CohortSchema, c)));
        process.stdout.write(table(["name", "unit type", "size", "created", "by"], list.map(cohortRow), [2]));
      }),
    );
  cohorts
    .command("show <name>")
    .description("show one cohort")
    .option("--json", "print JSON")
    .action(
      run(async (ctx, name: string, o: { json?: boolean }) => {
        const { cohort } = await ctx.client(CohortService).getCohort({ name });
        if (o.json) return void printJson(toJson(CohortSchema, cohort!));
        const [n, type, size, created, by] = cohortRow(cohort!);
        process.stdout.write(`cohort     ${n}\nunit type  ${type}\nsize       ${size}\ncreated    ${created}\nby         ${by}\n`);
      }),
    );
  cohorts
    .command("export <name>")
    .description("write a cohort's ids, one per line, in upload order")
    .option("-o, --output <path>", "write here (default: stdout)")
    .option("--batch-size <n>", "ids per message, 1..10000")
    .action(run((ctx, name: string, o: { output?: string; batchSize?: string }) => exportCohort(ctx, name, o)));
  cohorts
    .command("delete <name>")
    .description("delete a cohort")
    .action(
      run(async (ctx, name: string) => {
        await ctx.client(CohortService).deleteCohort({ name });
        process.stdout.write(`deleted cohort ${name}\n`);
      }),
    );
}
