/** `assignment jobs start|list|show|cancel|watch` and `assignment schedules create|list|delete` (JobService). */
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { type Job, JobKind, JobSchema, JobService, JobState, type Schedule, ScheduleSchema } from "assignment-client";
import { type Context, UsageError } from "./context.js";
import { count, parseJsonObject, table } from "./format.js";
import { Progress } from "./progress.js";

type Run = <A extends unknown[]>(body: (ctx: Context, ...args: A) => Promise<void>) => (...args: unknown[]) => Promise<void>;

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
const printJson = (value: unknown) => process.stdout.write(JSON.stringify(value, null, 2) + "\n");
const stateName = (s: JobState) => (JobState[s] ?? String(s)).toLowerCase();
const kindName = (k: JobKind | undefined) => (k === undefined ? "" : (JobKind[k] ?? String(k)).toLowerCase());
const when = (t: { seconds: bigint } | undefined) => (t ? new Date(Number(t.seconds) * 1000).toISOString() : "");

const ATTRIBUTES_HELP =
  'assign, warm: attributes of every unit for targeting conditions, a JSON object, e.g. \'{"country":"US"}\' (a cohort uploaded with per-unit attributes lays each unit\'s own over them)';

const KINDS: Record<string, JobKind> = {
  assign: JobKind.ASSIGN,
  warm: JobKind.WARM,
  migrate: JobKind.MIGRATE,
  import: JobKind.IMPORT,
};

function parseKind(kind: string): JobKind {
  const k = KINDS[kind];
  if (k === undefined) throw new UsageError(`kind: "${kind}" is not assign, warm, migrate or import`);
  return k;
}

interface SpecOptions {
  cohort?: string;
  experiment?: string[];
  tag?: string;
  source?: string;
  target?: string;
  map?: string[];
  stopSource?: boolean;
  overwrite?: boolean;
  attributes?: string;
}

function specOf(kind: string, o: SpecOptions) {
  const k = parseKind(kind);
  if (o.attributes !== undefined && (k === JobKind.MIGRATE || k === JobKind.IMPORT)) {
    throw new UsageError(`--attributes: only for assign and warm jobs (not ${kind})`);
  }
  if (k === JobKind.MIGRATE) {
    if (!o.source || !o.target) throw new UsageError("migrate: --source and --target are required");
    if (!o.map?.length) throw new UsageError("migrate: give --map <source-variant>=<target-variant> (repeat)");
    const variantMapping: Record<string, string> = {};
    for (const m of o.map) {
      const eq = m.indexOf("=");
      if (eq <= 0 || eq === m.length - 1) throw new UsageError(`--map: "${m}" is not <source-variant>=<target-variant>`);
      variantMapping[m.slice(0, eq)] = m.slice(eq + 1);
    }
    return { kind: k, sourceExperimentKey: o.source, targetExperimentKey: o.target, variantMapping, stopSource: o.stopSource ?? false };
  }
  if (!o.cohort) throw new UsageError("--cohort: required");
  if (k === JobKind.IMPORT) {
    if (!o.target) throw new UsageError("import: --target <experiment> is required");
    return { kind: k, cohort: o.cohort, targetExperimentKey: o.target, overwrite: o.overwrite ?? false };
  }
  if (!o.experiment?.length && !o.tag) throw new UsageError("give --experiment (repeat) or --tag");
  return {
    kind: k,
    cohort: o.cohort,
    experimentKeys: o.experiment ?? [],
    tag: o.tag ?? "",
    ...(o.attributes === undefined ? {} : { attributes: parseJsonObject("--attributes", o.attributes) as JsonObject }),
  };
}

/** What a job runs over and into, in a few words. */
function jobSubject(s: Job["spec"]): string {
  if (!s) return "";
  if (s.kind === JobKind.MIGRATE) {
    const map = Object.entries(s.variantMapping)
      .map(([f, t]) => `${f}=${t}`)
      .join(",");
    return `${s.sourceExperimentKey} → ${s.targetExperimentKey} (${map})${s.stopSource ? ", then stop the source" : ""}`;
  }
  if (s.kind === JobKind.IMPORT) return `${s.cohort} → ${s.targetExperimentKey}${s.overwrite ? " (overwrite)" : ""}`;
  return `${s.cohort} × ${s.experimentKeys.join(",")}`;
}

function jobLine(j: Job): string {
  const stored = j.spec?.kind === JobKind.MIGRATE ? "copied" : j.spec?.kind === JobKind.IMPORT ? "imported" : "enrolled";
  return `job ${j.id}: ${stateName(j.state)}, ${kindName(j.spec?.kind)} ${jobSubject(j.spec)}, ${count(j.processedUnits)} / ${count(j.totalUnits)} units, ${count(j.enrolled)} ${stored}`;
}

function jobDetails(j: Job): string {
  const lines = [
    `job        ${j.id}`,
    `state      ${stateName(j.state)}`,
    `kind       ${kindName(j.spec?.kind)}`,
    `what       ${jobSubject(j.spec)}${j.spec?.tag ? ` (tag ${j.spec.tag})` : ""}`,
    `units      ${count(j.processedUnits)} / ${count(j.totalUnits)} (chunks ${j.chunksDone} / ${j.chunks})`,
    `enrolled   ${count(j.enrolled)}`,
    `created    ${when(j.createTime)} by ${j.createdBy}${j.schedule ? ` (schedule ${j.schedule})` : ""}`,
  ];
  if (j.startTime) lines.push(`started    ${when(j.startTime)}`);
  if (j.endTime) lines.push(`ended      ${when(j.endTime)}`);
  if (j.error) lines.push(`error      ${j.error}`);
  return lines.join("\n") + "\n";
}

/** Follows a job until it ends, with a progress bar on a terminal; exit code 1 unless it is done. */
export async function watchJob(ctx: Context, id: string, o: { json?: boolean } = {}): Promise<void> {
  let progress: Progress | undefined;
  let shown = 0n;
  let last: Job | undefined;
  for await (const m of ctx.client(JobService).watchJob({ id })) {
    const j = m.job!;
    last = j;
    if (o.json) {
      printJson({ job: toJson(JobSchema, j), unitsPerSecond: m.unitsPerSecond, etaSeconds: m.etaSeconds });
      continue;
    }
    progress ??= new Progress({
      unit: "units",
      total: Number(j.totalUnits),
      enabled: ctx.options.progress && process.stderr.isTTY === true,
    });
    progress.add(Number(j.processedUnits - shown));
    shown = j.processedUnits;
  }
  progress?.stop();
  if (!last) return;
  if (!o.json) process.stdout.write(`${jobLine(last)}\n`);
  if (last.state !== JobState.DONE) {
    if (last.error) process.stderr.write(`error: job ${last.id} ${stateName(last.state)}: ${last.error}\n`);
    process.exitCode = 1;
  }
}

function scheduleRow(s: Schedule): string[] {
  const what = s.spec?.experimentKeys.length || s.spec?.kind === JobKind.MIGRATE || s.spec?.kind === JobKind.IMPORT;
  const subject = what ? jobSubject(s.spec) : `${s.spec?.cohort} × tag ${s.spec?.tag}`;
  return [s.name, s.cron, s.timeZone, `${kindName(s.spec?.kind)} ${subject}`, s.createdBy];
}

export function addJobCommands(program: Command, run: Run): void {
  const jobs = program.command("jobs").description("durable background jobs over cohorts (survive the server; resumed by any worker)");
  jobs
    .command("start <kind>")
    .description(
      "start a job: assign (store every unit's assignment), warm (load stored ones into the caches), migrate (copy stored assignments between experiments) or import (a cohort uploaded with --variants into an experiment)",
    )
    .option("--cohort <name>", "assign, warm, import: the cohort")
    .option("--experiment <key>", "assign, warm: an experiment (repeat)", collect)
    .option("--tag <tag>", "assign, warm: every RUNNING experiment with this tag (of the cohort's unit type)")
    .option("--attributes <json>", ATTRIBUTES_HELP)
    .option("--source <key>", "migrate: the experiment copied from")
    .option("--target <key>", "migrate, import: the experiment copied or imported into")
    .option("--map <from=to>", "migrate: a source variant and the target variant it becomes (repeat)", collect)
    .option("--stop-source", "migrate: stop the source experiment once every unit is copied")
    .option("--overwrite", "import: replace stored assignments of the cohort's units")
    .option("--watch", "follow it to the end with a progress bar")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  assignment jobs start assign --cohort expected-users --tag homepage --watch\n  assignment jobs start migrate --source old-test --target new-test --map a=control --map b=green --stop-source --watch\n  assignment jobs start import --cohort legacy-rows --target new-test --watch",
    )
    .action(
      run(async (ctx, kind: string, o: SpecOptions & { watch?: boolean; json?: boolean }) => {
        const { job } = await ctx.client(JobService).startJob({ spec: specOf(kind, o) });
        if (o.json && !o.watch) return void printJson(toJson(JobSchema, job!));
        process.stderr.write(`started job ${job!.id} (${count(job!.totalUnits)} units, ${job!.chunks} chunks)\n`);
        if (o.watch) await watchJob(ctx, job!.id, { json: o.json });
        else process.stdout.write(`${job!.id}\n`);
      }),
    );
  jobs
    .command("list")
    .description("list jobs, newest first")
    .option("--limit <n>", "at most this many (1..1000, default 100)")
    .option("--json", "print JSON")
    .action(
      run(async (ctx, o: { limit?: string; json?: boolean }) => {
        const { jobs: list } = await ctx.client(JobService).listJobs({ limit: o.limit ? Number(o.limit) : 0 });
        if (o.json) return void printJson(list.map((j) => toJson(JobSchema, j)));
        process.stdout.write(
          table(
            ["id", "state", "kind", "cohort", "units", "processed", "enrolled", "created"],
            list.map((j) => [
              j.id,
              stateName(j.state),
              kindName(j.spec?.kind),
              j.spec?.cohort ?? "",
              count(j.totalUnits),
              count(j.processedUnits),
              count(j.enrolled),
              when(j.createTime),
            ]),
            [4, 5, 6],
          ),
        );
      }),
    );
  jobs
    .command("show <id>")
    .description("show one job")
    .option("--json", "print JSON")
    .action(
      run(async (ctx, id: string, o: { json?: boolean }) => {
        const { job } = await ctx.client(JobService).getJob({ id });
        if (o.json) return void printJson(toJson(JobSchema, job!));
        process.stdout.write(jobDetails(job!));
      }),
    );
  jobs
    .command("cancel <id>")
    .description("cancel a job: no further chunk runs (what was stored stays)")
    .action(
      run(async (ctx, id: string) => {
        const { job } = await ctx.client(JobService).cancelJob({ id });
        process.stdout.write(`${jobLine(job!)}\n`);
      }),
    );
  jobs
    .command("watch <id>")
    .description("follow a job to its end with a progress bar (exit code 1 unless it is done)")
    .option("--json", "print each progress message as JSON")
    .action(run((ctx, id: string, o: { json?: boolean }) => watchJob(ctx, id, o)));

  const schedules = program.command("schedules").description("cron schedules of jobs (each tick starts one job, once across servers)");
  schedules
    .command("create <name> <kind>")
    .description("schedule a job: at every tick of --cron, one job of <kind> (assign or warm)")
    .option("--cron <expression>", "five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'")
    .option("--time-zone <zone>", "IANA time zone of the cron expression (default UTC)")
    .option("--cohort <name>", "the cohort")
    .option("--experiment <key>", "an experiment (repeat)", collect)
    .option("--tag <tag>", "every RUNNING experiment with this tag at each tick")
    .option("--attributes <json>", ATTRIBUTES_HELP)
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExample:\n  assignment schedules create nightly-homepage assign --cron '0 3 * * *' --cohort expected-users --tag homepage",
    )
    .action(
      run(async (ctx, name: string, kind: string, o: SpecOptions & { cron?: string; timeZone?: string; json?: boolean }) => {
        if (!o.cron) throw new UsageError("--cron: required");
        const { schedule } = await ctx
          .client(JobService)
          .createSchedule({ schedule: { name, cron: o.cron, timeZone: o.timeZone ?? "", spec: specOf(kind, o) } });
        if (o.json) return void printJson(toJson(ScheduleSchema, schedule!));
        process.stdout.write(`schedule ${schedule!.name}: ${schedule!.cron} (${schedule!.timeZone})\n`);
      }),
    );
  schedules
    .command("list")
    .description("list schedules")
    .option("--json", "print JSON")
    .action(
      run(async (ctx, o: { json?: boolean }) => {
        const { schedules: list } = await ctx.client(JobService).listSchedules({});
        if (o.json) return void printJson(list.map((s) => toJson(ScheduleSchema, s)));
        process.stdout.write(table(["name", "cron", "time zone", "job", "by"], list.map(scheduleRow)));
      }),
    );
  schedules
    .command("delete <name>")
    .description("delete a schedule (jobs it started stay)")
    .action(
      run(async (ctx, name: string) => {
        await ctx.client(JobService).deleteSchedule({ name });
        process.stdout.write(`deleted schedule ${name}\n`);
      }),
    );
}
