/** `assignment events tail` (ExperimentService.WatchAssignments). */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { type AssignmentEvent, AssignmentEventKind, AssignmentEventSchema, Source } from "assignment-client";
import { type Context, UsageError } from "./context.js";

type Run = <A extends unknown[]>(body: (ctx: Context, ...args: A) => Promise<void>) => (...args: unknown[]) => Promise<void>;

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export interface TailOptions {
  from?: string;
  fromStart?: boolean;
  experiment?: string[];
  format?: string;
  positionFile?: string;
  untilCaughtUp?: boolean;
}

const kindName = (k: AssignmentEventKind) => (AssignmentEventKind[k] ?? String(k)).toLowerCase();

function textLine(e: AssignmentEvent): string {
  const what = e.kind === AssignmentEventKind.ERASED ? `${e.unitType} ${e.unitId}` : `${e.experimentKey} ${e.unitId} ${e.variantKey}`;
  const source = e.kind === AssignmentEventKind.ERASED ? "" : ` ${(Source[e.source] ?? String(e.source)).toLowerCase()}`;
  return `${e.position} ${kindName(e.kind)} ${what}${source}\n`;
}

/** The position stored in `file` (the last one processed), or undefined when there is no file. */
function storedPosition(file: string): bigint | undefined {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, "utf8").trim();
  if (!/^\d+$/.test(text)) throw new UsageError(`--position-file: ${file} does not hold a position (got "${text.slice(0, 40)}")`);
  return BigInt(text);
}

/** Replaces `file` with `position` in one rename, so a crash leaves the old or the new one whole. */
function storePosition(file: string, position: bigint): void {
  writeFileSync(`${file}.tmp`, `${position}\n`);
  renameSync(`${file}.tmp`, file);
}

/**
 * Prints events as they are committed. The position file, when given, is where it resumes (unless
 * --from or --from-start) and is rewritten after each batch has been written to stdout: a tail
 * restarted after a crash prints nothing twice except, at worst, the batch it was printing.
 */
export async function tail(ctx: Context, o: TailOptions): Promise<void> {
  const format = o.format ?? "text";
  if (format !== "text" && format !== "jsonl") throw new UsageError(`--format: "${format}" is not text or jsonl`);
  if (o.from !== undefined && o.fromStart) throw new UsageError("give --from or --from-start, not both");
  if (o.from !== undefined && !/^\d+$/.test(o.from)) throw new UsageError(`--from: "${o.from}" is not a position (a whole number)`);
  const stored = o.positionFile ? storedPosition(o.positionFile) : undefined;
  const start =
    o.from !== undefined
      ? { case: "afterPosition" as const, value: BigInt(o.from) }
      : o.fromStart
        ? { case: "fromOldest" as const, value: true }
        : stored !== undefined
          ? { case: "afterPosition" as const, value: stored }
          : { case: "fromNow" as const, value: true };
  const stream = ctx.experiments.watchAssignments(
    { start, experimentKeys: o.experiment ?? [], stopWhenCaughtUp: o.untilCaughtUp === true },
    { timeoutMs: 0 },
  );
  for await (const m of stream) {
    if (m.events.length > 0) {
      const text = m.events
        .map((e) => (format === "jsonl" ? `${JSON.stringify(toJson(AssignmentEventSchema, e))}\n` : textLine(e)))
        .join("");
      await new Promise<void>((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
    }
    if (o.positionFile && (m.events.length > 0 || stored === undefined)) storePosition(o.positionFile, m.position);
  }
}

export function addEventCommands(program: Command, run: Run): void {
  const events = program
    .command("events")
    .description("the stream of assignment events (every change to stored assignments and overrides)");
  events
    .command("tail")
    .description("print events as they are committed (from now unless --from, --from-start or a position file says otherwise)")
    .option("--from <position>", "start after this position (the last one processed)")
    .option("--from-start", "start from the oldest event retained")
    .option("--experiment <key>", "only this experiment's events and the erasures of its unit type (repeat for several)", collect)
    .option("--format <format>", "text or jsonl (one JSON object per event)", "text")
    .option("--position-file <file>", "resume after the position stored here, and store the last position printed after each batch")
    .option("--until-caught-up", "stop once every event committed so far was printed")
    .action(run((ctx, o: TailOptions) => tail(ctx, o)));
}
