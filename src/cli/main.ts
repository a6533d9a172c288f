/**
 * `assignment`: the command line of the assignment server, built on the TypeScript client.
 * Run `assignment --help` (or `npx assignment --help` in this repository).
 */
import { pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { Command, CommanderError, Option } from "commander";
import { ExperimentStatus } from "assignment-client";
import * as admin from "./admin.js";
import { addCohortCommands } from "./cohorts.js";
import { addEventCommands } from "./events.js";
import { addJobCommands } from "./jobs.js";
import { Context, parseDuration, UsageError } from "./context.js";
import * as data from "./data.js";
import * as holdouts from "./holdouts.js";
import { DEFAULT_ADDRESS } from "../server-defaults.js";

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Runs a command body with a Context, closing its clients afterwards. */
function run<A extends unknown[]>(body: (ctx: Context, ...args: A) => Promise<void>) {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const ctx = new Context(command);
    try {
      await body(ctx, ...(args.slice(0, -1) as A));
    } finally {
      ctx.close();
    }
  };
}

export function buildProgram(): Command {
  const program = new Command("assignment")
    .description("Command line of the experiment-assignment server (gRPC)")
    .addOption(new Option("-a, --address <host:port>", "server address").env("ASSIGNMENT_ADDRESS").default(DEFAULT_ADDRESS))
    .addOption(
      new Option("-t, --token <token>", "bearer token (one whose role may make the calls: see the README's roles)").env("ASSIGNMENT_TOKEN"),
    )
    .addOption(
      new Option("--timeout <duration>", "deadline of each unary call: 30s, 500ms, 2m or milliseconds (streams have none)")
        .env("ASSIGNMENT_TIMEOUT")
        .default(30_000, "30s")
        .argParser(parseDuration),
    )
    .addOption(new Option("--tls", "connect with TLS (system trust roots)"))
    .addOption(new Option("--ca-file <pem>", "connect with TLS trusting this CA certificate (implies --tls)").env("ASSIGNMENT_CA_FILE"))
    .option("--no-progress", "no progress bar or closing summary on stderr")
    .showHelpAfterError("(add --help for usage)")
    .exitOverride();

  // ---------------------------------------------------------------- experiments
  const experiments = program.command("experiments").alias("exp").description("create, list, show and change experiments");
  experiments
    .command("create <key>")
    .description("create an experiment (DRAFT unless --start)")
    .option("--variant <key:weight[:params]>", "a variant, in order: weight in basis points or percent, params as JSON (repeat)", collect)
    .option("--unit-type <type>", "unit type (default user_id)")
    .option("--salt <salt>", "hash salt (default: the key)")
    .option("--rollout <share>", "share of units enrolled: basis points or percent (default 100%)")
    .option("--start", "create it RUNNING")
    .option("--default-variant <key>", "variant of units not enrolled (default: the first)")
    .option("--tag <tag>", "a tag (repeat)", collect)
    .option("--description <text>", "description")
    .option("--target <cel>", `targeting condition, CEL over attributes, e.g. 'attributes.country == "US"' (README "Targeting")`)
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      '\nExample:\n  assignment experiments create checkout-button --variant control:50% --variant \'green:50%:{"color":"#0a0"}\' --rollout 20% --start',
    )
    .action(run((ctx, key: string, o: admin.CreateOptions) => admin.createExperiment(ctx, key, o)));
  experiments
    .command("list")
    .description("list experiments")
    .option("--status <status>", "only draft, running, paused or stopped ones")
    .option("--tag <tag>", "only those with this tag")
    .option("--namespace <key>", "only those of this namespace")
    .option("--archived", "archived ones too")
    .option("--json", "print JSON")
    .action(
      run((ctx, o: { status?: string; tag?: string; namespace?: string; archived?: boolean; json?: boolean }) =>
        admin.listExperiments(ctx, o),
      ),
    );
  experiments
    .command("show <key>")
    .alias("get")
    .description("show one experiment (as it is now, or as it was at --version)")
    .option("--version <n>", "the experiment as it was at this version (see `assignment changes`)")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { version?: string; json?: boolean }) => admin.showExperiment(ctx, key, o)));
  experiments
    .command("update <key>")
    .description("change an experiment (fields not given are unchanged)")
    .option("--weight <variant=weight>", "new weight of a variant (repeat; weights must still sum to 100%)", collect)
    .option("--add-variant <key:weight[:params]>", "append a variant (repeat)", collect)
    .option("--params <variant=json>", "replace a variant's params (repeat)", collect)
    .option("--rollout <share>", "basis points or percent")
    .option("--status <status>", "draft, running, paused or stopped")
    .option("--winner <variant>", 'the winner ("" clears it)')
    .option("--default-variant <variant>", "default variant")
    .option("--tags <a,b,c>", 'replace the tags ("" removes all)')
    .option("--description <text>", "description")
    .option("--target <cel>", 'a new targeting condition, CEL over attributes ("" removes targeting; stored units keep their variant)')
    .option("--version <n>", "refuse (ABORTED) unless the experiment is still at this version (default: its current one)")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: admin.UpdateOptions) => admin.updateExperiment(ctx, key, o)));
  for (const [name, status, what] of [
    ["start", ExperimentStatus.RUNNING, "start (or resume) assigning: RUNNING"],
    ["pause", ExperimentStatus.PAUSED, "pause: enrolled units keep their variant, nobody new is enrolled"],
    ["stop", ExperimentStatus.STOPPED, "stop: everyone gets the winner (--winner) or the default variant"],
  ] as const) {
    const c = experiments.command(`${name} <key>`).description(what).option("--json", "print JSON");
    if (name === "stop") c.option("--winner <variant>", "the variant everyone gets from now on");
    c.action(run((ctx, key: string, o: { winner?: string; json?: boolean }) => admin.setStatus(ctx, key, status, o)));
  }

  experiments
    .command("archive <key>")
    .description("archive a DRAFT or STOPPED experiment: it answers UNKNOWN_EXPERIMENT; its key and salt stay taken")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => admin.archiveExperiment(ctx, key, false, o)));
  experiments
    .command("unarchive <key>")
    .description("serve an archived experiment again, as it was")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => admin.archiveExperiment(ctx, key, true, o)));

  // ---------------------------------------------------------------- namespaces
  const namespaces = program.command("namespaces").alias("ns").description("namespaces of mutually exclusive experiments");
  namespaces
    .command("create <key>")
    .description("create a namespace")
    .option("--segments <n>", "number of segments, 1..100000 (default 10000)")
    .option("--unit-type <type>", "unit type (default user_id)")
    .option("--salt <salt>", "hash salt (default: the key)")
    .option("--default-params <json>", "params of units in none of its experiments, as a JSON object")
    .option("--json", "print JSON")
    .action(
      run((ctx, key: string, o: { segments?: string; unitType?: string; salt?: string; defaultParams?: string; json?: boolean }) =>
        admin.createNamespace(ctx, key, o),
      ),
    );
  namespaces
    .command("update <key>")
    .description("change a namespace's default params")
    .option("--default-params <json>", 'the new default params, a JSON object ("{}" removes them)')
    .option("--version <n>", "refuse (ABORTED) unless the namespace is still at this version")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { defaultParams?: string; version?: string; json?: boolean }) => admin.updateNamespace(ctx, key, o)));
  namespaces
    .command("list")
    .description("list namespaces")
    .option("--archived", "archived ones too")
    .option("--json", "print JSON")
    .action(run((ctx, o: { archived?: boolean; json?: boolean }) => admin.listNamespaces(ctx, o)));
  namespaces
    .command("archive <key>")
    .description("archive a namespace whose experiments are all archived; its key and salt stay taken")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => admin.archiveNamespace(ctx, key, false, o)));
  namespaces
    .command("unarchive <key>")
    .description("let an archived namespace take allocations again")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => admin.archiveNamespace(ctx, key, true, o)));
  namespaces
    .command("show <key>")
    .description("show a namespace and which experiment holds how many segments")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => admin.showNamespace(ctx, key, o)));
  namespaces
    .command("allocate <namespace> <experiment> <segments>")
    .description("give an experiment that many more free segments")
    .option("--json", "print JSON")
    .action(run((ctx, ns: string, exp: string, n: string, o: { json?: boolean }) => admin.allocateSegments(ctx, ns, exp, n, o)));
  namespaces
    .command("release <namespace> <experiment>")
    .description("free every segment the experiment holds")
    .option("--json", "print JSON")
    .action(run((ctx, ns: string, exp: string, o: { json?: boolean }) => admin.releaseSegments(ctx, ns, exp, o)));

  // ---------------------------------------------------------------- overrides
  const overrides = program.command("overrides").description("force variants for chosen units (testers)");
  overrides
    .command("set <experiment> [unit=variant...]")
    .description("force variants: unit=variant arguments and/or --file")
    .option("--file <csv>", "CSV of unit_id,variant_key rows (header optional)")
    .action(run((ctx, exp: string, pairs: string[], o: { file?: string }) => admin.setOverrides(ctx, exp, pairs, o)));
  overrides
    .command("clear <experiment> [units...]")
    .description("remove the overrides of these units, or --all")
    .option("--all", "remove every override of the experiment")
    .action(run((ctx, exp: string, units: string[], o: { all?: boolean }) => admin.clearOverrides(ctx, exp, units, o)));
  overrides
    .command("list [experiment]")
    .description("list the overrides of an experiment (of every experiment when none is named)")
    .option("--page-size <n>", "overrides fetched per call, 1..10000 (default 1000)")
    .option("--json", "print one JSON object a line")
    .action(run((ctx, exp: string | undefined, o: { pageSize?: string; json?: boolean }) => admin.listOverrides(ctx, exp, o)));

  program
    .command("erase [units...]")
    .description("erase units (data protection): their stored assignments and overrides in every experiment of their unit type")
    .option("--unit-type <type>", "the units' type (default user_id)")
    .option("--file <path>", "unit ids, one a line")
    .option("--json", "print JSON")
    .action(run((ctx, units: string[], o: { unitType?: string; file?: string; json?: boolean }) => admin.eraseUnits(ctx, units, o)));

  // ---------------------------------------------------------------- holdouts
  const holdoutsCmd = program.command("holdouts").description("holdouts: a share of units kept out of every experiment they cover");
  holdoutsCmd
    .command("create <key>")
    .description("create a holdout")
    .option("--share <share>", "share of units held out: basis points or percent")
    .option("--tags <a,b,c>", "cover the experiments carrying any of these tags (default: every experiment of the unit type)")
    .option("--unit-type <type>", "unit type (default user_id)")
    .option("--salt <salt>", "hash salt (default: the key)")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: Parameters<typeof holdouts.createHoldout>[2]) => holdouts.createHoldout(ctx, key, o)));
  holdoutsCmd
    .command("get <key>")
    .alias("show")
    .description("show a holdout and the experiments it covers")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => holdouts.showHoldout(ctx, key, o)));
  holdoutsCmd
    .command("list")
    .description("list holdouts")
    .option("--json", "print JSON")
    .action(run((ctx, o: { json?: boolean }) => holdouts.listHoldouts(ctx, o)));
  holdoutsCmd
    .command("update <key>")
    .description("change a holdout's share or tags (key, salt and unit type never change)")
    .option("--share <share>", "basis points or percent")
    .option("--tags <a,b,c>", 'replace the tags ("" covers every experiment of the unit type)')
    .option("--version <n>", "refuse (ABORTED) unless the holdout is still at this version")
    .option("--json", "print JSON")
    .action(
      run((ctx, key: string, o: { share?: string; tags?: string; version?: string; json?: boolean }) =>
        holdouts.updateHoldout(ctx, key, o),
      ),
    );
  holdoutsCmd
    .command("stats <key>")
    .description("held-out and exposed units per covered experiment")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { json?: boolean }) => holdouts.holdoutStats(ctx, key, o)));

  // ---------------------------------------------------------------- assignments
  program
    .command("assign <experiment> <unit>")
    .description("assign one unit")
    .option("--unit-type <type>", "the unit's type (default user_id)")
    .option("--dry-run", "store nothing")
    .option("--explain", "show which rule decided, buckets, segment and which layer answered")
    .option("--attributes <json>", `the unit's attributes for targeting conditions, a JSON object, e.g. '{"country":"US"}'`)
    .option("--params", "show the variant's params")
    .option("--json", "print JSON")
    .option("--allow-unknown", "an unknown experiment is an answer (UNKNOWN_EXPERIMENT), not an error: exit 0")
    .action(run((ctx, exp: string, unit: string, o: Parameters<typeof data.assignOne>[3]) => data.assignOne(ctx, exp, unit, o)));
  program
    .command("params <unit>")
    .description("a unit's params per namespace: the defaults under the variant it gets (ResolveParams)")
    .option("--namespace <key>", "a namespace (repeat; default: every namespace of the unit type)", collect)
    .option("--tag <tag>", "only namespaces holding an experiment with this tag")
    .option("--unit-type <type>", "the unit's type (default user_id)")
    .option("--dry-run", "store nothing")
    .option("--json", "print JSON")
    .action(run((ctx, unit: string, o: Parameters<typeof holdouts.resolveParams>[2]) => holdouts.resolveParams(ctx, unit, o)));
  program
    .command("cohort <experiments...>")
    .alias("assign-cohort")
    .description("assign a cohort (one unit id per line, from --file or stdin) through StreamAssign")
    .option("-f, --file <path>", "ids, one per line (default: stdin); with a file the progress bar has an ETA")
    .option("-o, --output <path>", "write the answers here (default: stdout)")
    .option("--format <format>", "csv or jsonl", "csv")
    .option("--unit-type <type>", "the units' type (default user_id)")
    .option("--batch-size <n>", "ids per message (default and most: 10,000, or 100,000 / experiments)")
    .option("--dry-run", "store nothing")
    .option("--allow-unknown", "answer units of unknown experiments UNKNOWN_EXPERIMENT instead of stopping with exit code 2")
    .addHelpText("after", "\nOutput: one row per unit and experiment: unit_id,experiment_key,variant_key,reason,enrolled,stored")
    .action(run((ctx, exps: string[], o: data.CohortCommandOptions) => data.cohort(ctx, exps, o)));
  program
    .command("import [file]")
    .description("import stored assignments from CSV (file or stdin), all or nothing")
    .option("--experiment <key>", "experiment of every row (instead of an experiment_key column)")
    .option("--overwrite", "replace stored assignments (default: units already stored keep theirs)")
    .option("--skip-invalid", "import the valid rows and report the invalid ones (default: refuse the whole import)")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nThe CSV needs a header naming unit_id and variant_key, and experiment_key unless --experiment; other columns are ignored (so an export can be imported as it is).",
    )
    .action(run((ctx, file: string | undefined, o: data.ImportOptions) => data.importCsv(ctx, file, o)));
  program
    .command("export <experiment>")
    .description("export every stored assignment of an experiment as CSV, ordered by unit id")
    .option("-o, --output <path>", "write here (default: stdout)")
    .option("--batch-size <n>", "rows per message, 1..50000 (default 10000)")
    .addHelpText("after", "\nColumns: experiment_key,unit_id,variant_key,source,version")
    .action(run((ctx, exp: string, o: { output?: string; batchSize?: string }) => data.exportCsv(ctx, exp, o)));
  program
    .command("stats <experiment>")
    .description("units per variant and the sample-ratio check")
    .option("--json", "print JSON")
    .option("--fail-on-srm", "exit with code 3 on a sample-ratio mismatch")
    .action(run((ctx, exp: string, o: { json?: boolean; failOnSrm?: boolean }) => admin.stats(ctx, exp, o)));

  program
    .command("get <experiment>")
    .description("show one experiment (as it is now, or as it was at --version); same as `experiments show`")
    .option("--version <n>", "the experiment as it was at this version")
    .option("--json", "print JSON")
    .action(run((ctx, key: string, o: { version?: string; json?: boolean }) => admin.showExperiment(ctx, key, o)));
  program
    .command("changes")
    .description("the audit log: administrative changes, newest first (who, when, which RPC, what changed)")
    .option("--experiment <key>", "only changes of this experiment")
    .option("--namespace <key>", "only changes of this namespace")
    .option("--holdout <key>", "only changes of this holdout")
    .option("--cohort <name>", "only changes of this cohort")
    .option("--job <id>", "only changes of this job")
    .option("--schedule <name>", "only changes of this schedule")
    .option("--token-name <name>", "only changes made with the token of this name")
    .option("--since <time>", "only changes at or after: an ISO time (2026-01-31T12:00:00Z) or an age (90s, 30m, 2h, 7d)")
    .option("--until <time>", "only changes before: an ISO time or an age")
    .option("--limit <n>", "at most this many (default 50; 0: all)")
    .option("--json", "print JSON, one change per line")
    .action(run((ctx, o: admin.ChangesOptions) => admin.listChanges(ctx, o)));

  addCohortCommands(program, run);
  addJobCommands(program, run);
  addEventCommands(program, run);

  return program;
}

/** Exit codes: 0 success; 1 the server refused or failed the call (status printed); 2 bad usage
 * or input; 3 `stats --fail-on-srm` found a sample-ratio mismatch. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end in a CommanderError too, with exit code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    const e = err as Partial<grpc.ServiceError>;
    if (typeof e.code === "number" && grpc.status[e.code] !== undefined) {
      const address = program.opts<{ address: string }>().address;
      let text = `error: ${grpc.status[e.code]} (gRPC status ${e.code}): ${e.details ?? e.message}\n`;
      if (e.code === grpc.status.UNAVAILABLE) text += `  is the server running at ${address}? (--address, ASSIGNMENT_ADDRESS)\n`;
      if (e.code === grpc.status.UNAUTHENTICATED) text += `  pass the right token: --token or ASSIGNMENT_TOKEN\n`;
      if (e.code === grpc.status.PERMISSION_DENIED) text += `  this token's role may not do that: use a token of the role named above\n`;
      if (e.code === grpc.status.DEADLINE_EXCEEDED) text += `  the call took longer than --timeout\n`;
      process.stderr.write(text);
      return 1;
    }
    if ((err as NodeJS.ErrnoException).code === "EPIPE") return 0; // the reader of stdout went away (| head)
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

/** Runs the CLI on process.argv and sets the exit code (bin/assignment.mjs calls this). */
export async function runCli(): Promise<void> {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
  });
  process.exitCode = await main(process.argv);
}

// `node --import tsx src/cli/main.ts …` runs it too.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runCli();
