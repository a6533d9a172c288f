/** `assignment cohorts upload|list|show|export|delete`: stored cohorts (CohortService). */
import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { type Cohort, CohortSchema, CohortService } from "assignment-client";
import { MAX_BULK_UNITS } from "assignment-client/limits";
import type { Context } from "./context.js";
import { readLines } from "./csv.js";
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
  o: { unitType?: string; replace?: boolean; json?: boolean },
): Promise<void> {
  const fromFile = file !== undefined && file !== "-";
  const total = fromFile ? await countLines(file!) : undefined;
  if (!fromFile && process.stdin.isTTY) process.stderr.write("reading unit ids from stdin, one per line (end with Ctrl-D) ...\n");
  const lines = readLines(await openInput(file));
  const progress = new Progress({ unit: "ids", total, enabled: ctx.options.progress && process.stderr.isTTY === true });
  async function* messages() {
    let ids: string[] = [];
    let first = true;
    for await (const line of lines) {
      if (line === "") continue;
      ids.push(line);
      if (ids.length === MAX_BULK_UNITS) {
        yield { ...(first ? { setup: { name, unitType: o.unitType ?? "", replace: o.replace ?? false } } : {}), unitIds: ids };
        progress.add(ids.length);
        first = false;
        ids = [];
      }
    }
    yield { ...(first ? { setup: { name, unitType: o.unitType ?? "", replace: o.replace ?? false } } : {}), unitIds: ids };
    progress.add(ids.length);
  }
  try {
    const r = await ctx.client(CohortService).uploadCohort(messages());
    progress.stop(ctx.options.progress ? "uploaded" : undefined);
    if (o.json) return void printJson(toJson(CohortSchema, r.cohort!));
    process.stdout.write(
      `cohort ${r.cohort!.name}: ${count(r.cohort!.size)} ids (${count(r.received)} received, ${count(r.duplicates)} repeats dropped)\n`,
    );
  } catch (err) {
    progress.stop();
    throw err;
  }
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
    .option("--json", "print JSON")
    .action(
      run((ctx, name: string, file: string | undefined, o: { unitType?: string; replace?: boolean; json?: boolean }) =>
        uploadCohort(ctx, name, file, o),
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
