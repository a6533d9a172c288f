import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { JsonObject } from "@bufbuild/protobuf";
import { ExperimentStatus, type Experiment, type GetExperimentStatsResponse } from "assignment-client";
import { type Context, UsageError } from "./context.js";
import { readCsv } from "./csv.js";
import { MAX_ERASE_UNITS, MAX_OVERRIDES_PER_CALL } from "assignment-client/limits";
import {
  bp,
  count,
  experimentDetails,
  experimentJson,
  experimentTable,
  namespaceDetails,
  namespaceJson,
  parseBasisPoints,
  parseCount,
  parseJsonObject,
  parseStatus,
  percent,
  statusName,
  table,
} from "./format.js";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Change, ListChangesRequestSchema } from "assignment-client";
import { GetExperimentStatsResponseSchema } from "assignment-client";

const print = (text: string) => process.stdout.write(text.endsWith("\n") ? text : text + "\n");
const printJson = (value: unknown) => print(JSON.stringify(value, null, 2));

/** `key:weight` or `key:weight:{"json":"params"}`; weight in basis points or as a percentage. */
export function parseVariant(spec: string): { key: string; weight: number; params?: JsonObject } {
  const first = spec.indexOf(":");
  if (first <= 0) throw new UsageError(`--variant: "${spec}" is not key:weight (e.g. control:5000 or control:50%)`);
  const second = spec.indexOf(":", first + 1);
  const key = spec.slice(0, first);
  const weight = parseBasisPoints(`--variant ${key}`, second < 0 ? spec.slice(first + 1) : spec.slice(first + 1, second));
  const params = second < 0 ? undefined : (parseJsonObject(`--variant ${key} params`, spec.slice(second + 1)) as JsonObject);
  return { key, weight, params };
}

/** `name=value` pairs (the value may hold "="). */
function parsePair(flag: string, spec: string): [string, string] {
  const eq = spec.indexOf("=");
  if (eq <= 0) throw new UsageError(`${flag}: "${spec}" is not name=value`);
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

export interface CreateOptions {
  variant: string[];
  unitType?: string;
  salt?: string;
  rollout?: string;
  start?: boolean;
  defaultVariant?: string;
  tag?: string[];
  description?: string;
  target?: string;
  json?: boolean;
}

export async function createExperiment(ctx: Context, key: string, o: CreateOptions) {
  if (!o.variant || o.variant.length === 0)
    throw new UsageError("--variant: give at least one, e.g. --variant control:50% --variant treatment:50%");
  const { experiment } = await ctx.experiments.createExperiment({
    key,
    salt: o.salt,
    unitType: o.unitType ?? "",
    variants: o.variant.map(parseVariant),
    rollout: o.rollout === undefined ? undefined : parseBasisPoints("--rollout", o.rollout),
    status: o.start ? ExperimentStatus.RUNNING : ExperimentStatus.DRAFT,
    defaultVariant: o.defaultVariant ?? "",
    tags: o.tag ?? [],
    description: o.description ?? "",
    condition: o.target ?? "",
  });
  o.json ? printJson(experimentJson(experiment!)) : print(experimentDetails(experiment!));
}

export async function listExperiments(
  ctx: Context,
  o: { status?: string; tag?: string; namespace?: string; archived?: boolean; json?: boolean },
) {
  const { experiments } = await ctx.experiments.listExperiments({
    status: o.status ? parseStatus(o.status) : ExperimentStatus.UNSPECIFIED,
    tag: o.tag ?? "",
    namespace: o.namespace ?? "",
    includeArchived: o.archived ?? false,
  });
  if (o.json) printJson(experiments.map(experimentJson));
  else print(experiments.length === 0 ? "no experiments" : experimentTable(experiments));
}

export async function showExperiment(ctx: Context, key: string, o: { version?: string; json?: boolean }) {
  const version = o.version === undefined ? undefined : BigInt(parseCount("--version", o.version));
  const { experiment } = await ctx.experiments.getExperiment({ key, version });
  o.json ? printJson(experimentJson(experiment!)) : print(experimentDetails(experiment!));
}

export interface UpdateOptions {
  weight?: string[];
  addVariant?: string[];
  params?: string[];
  rollout?: string;
  status?: string;
  winner?: string;
  defaultVariant?: string;
  tags?: string;
  description?: string;
  target?: string;
  version?: string;
  json?: boolean;
}

/** Applies the changes to the experiment as it is now (or at --version, refused if it moved on). */
export async function updateExperiment(ctx: Context, key: string, o: UpdateOptions) {
  const { experiment: current } = await ctx.experiments.getExperiment({ key });
  const exp = current!;
  let variants: Experiment["variants"] | undefined;
  if (o.weight?.length || o.addVariant?.length || o.params?.length) {
    const next: { key: string; weight: number; params?: JsonObject }[] = exp.variants.map((v) => ({
      key: v.key,
      weight: v.weight,
      params: v.params,
    }));
    for (const spec of o.weight ?? []) {
      const [name, value] = parsePair("--weight", spec);
      const v = next.find((x) => x.key === name);
      if (!v) throw new UsageError(`--weight: "${name}" is not a variant of ${key} (${next.map((x) => x.key).join(", ")})`);
      v.weight = parseBasisPoints(`--weight ${name}`, value);
    }
    for (const spec of o.params ?? []) {
      const [name, value] = parsePair("--params", spec);
      const v = next.find((x) => x.key === name);
      if (!v) throw new UsageError(`--params: "${name}" is not a variant of ${key} (${next.map((x) => x.key).join(", ")})`);
      v.params = parseJsonObject(`--params ${name}`, value) as JsonObject;
    }
    for (const spec of o.addVariant ?? []) next.push(parseVariant(spec));
    variants = next as Experiment["variants"];
  }
  const { experiment } = await ctx.experiments.updateExperiment({
    key,
    version: o.version !== undefined ? BigInt(parseCount("--version", o.version)) : exp.version,
    variants: variants ? { variants } : undefined,
    rollout: o.rollout === undefined ? undefined : parseBasisPoints("--rollout", o.rollout),
    status: o.status ? parseStatus(o.status) : ExperimentStatus.UNSPECIFIED,
    winner: o.winner,
    defaultVariant: o.defaultVariant,
    tags:
      o.tags === undefined
        ? undefined
        : {
            tags: o.tags
              .split(",")
              .map((t) => t.trim())
              .filter((t) => t !== ""),
          },
    description: o.description,
    condition: o.target,
  });
  o.json ? printJson(experimentJson(experiment!)) : print(experimentDetails(experiment!));
}

export async function setStatus(ctx: Context, key: string, status: ExperimentStatus, o: { winner?: string; json?: boolean }) {
  const { experiment: current } = await ctx.experiments.getExperiment({ key });
  const { experiment } = await ctx.experiments.updateExperiment({ key, version: current!.version, status, winner: o.winner });
  if (o.json) printJson(experimentJson(experiment!));
  else
    print(
      `${key}: ${statusName(current!.status)} -> ${statusName(experiment!.status)}${experiment!.winner ? ` (winner ${experiment!.winner})` : ""}, version ${experiment!.version}`,
    );
}

export async function createNamespace(
  ctx: Context,
  key: string,
  o: { segments?: string; unitType?: string; salt?: string; defaultParams?: string; json?: boolean },
) {
  const { namespace } = await ctx.experiments.createNamespace({
    key,
    salt: o.salt,
    unitType: o.unitType ?? "",
    segments: o.segments === undefined ? undefined : parseCount("--segments", o.segments),
    defaultParams: o.defaultParams === undefined ? undefined : (parseJsonObject("--default-params", o.defaultParams) as JsonObject),
  });
  o.json ? printJson(namespaceJson(namespace!)) : print(namespaceDetails(namespace!));
}

/** Replaces a namespace's default params ("{}" removes them). */
export async function updateNamespace(ctx: Context, key: string, o: { defaultParams?: string; version?: string; json?: boolean }) {
  if (o.defaultParams === undefined)
    throw new UsageError('--default-params: give the new default params as a JSON object ("{}" removes them)');
  const { namespace } = await ctx.experiments.updateNamespace({
    key,
    defaultParams: parseJsonObject("--default-params", o.defaultParams) as JsonObject,
    version: o.version === undefined ? undefined : BigInt(parseCount("--version", o.version)),
  });
  o.json ? printJson(namespaceJson(namespace!)) : print(namespaceDetails(namespace!));
}

/** Archives (or with `undo`, unarchives) an experiment. */
export async function archiveExperiment(ctx: Context, key: string, undo: boolean, o: { json?: boolean }) {
  const { experiment } = undo ? await ctx.experiments.unarchiveExperiment({ key }) : await ctx.experiments.archiveExperiment({ key });
  o.json
    ? printJson(experimentJson(experiment!))
    : print(
        undo
          ? `${key}: unarchived (${statusName(experiment!.status)}, version ${experiment!.version})`
          : `${key}: archived (version ${experiment!.version}); it answers UNKNOWN_EXPERIMENT, and its key and salt stay taken`,
      );
}

/** Archives (or with `undo`, unarchives) a namespace. */
export async function archiveNamespace(ctx: Context, key: string, undo: boolean, o: { json?: boolean }) {
  const { namespace } = undo ? await ctx.experiments.unarchiveNamespace({ key }) : await ctx.experiments.archiveNamespace({ key });
  o.json ? printJson(namespaceJson(namespace!)) : print(`${key}: ${undo ? "unarchived" : "archived; its key and salt stay taken"}`);
}

export async function listNamespaces(ctx: Context, o: { archived?: boolean; json?: boolean }) {
  const { namespaces } = await ctx.experiments.listNamespaces({ includeArchived: o.archived ?? false });
  if (o.json) {
    printJson(namespaces.map(namespaceJson));
    return;
  }
  print(
    namespaces.length === 0
      ? "no namespaces"
      : table(
          ["KEY", "UNIT TYPE", "SEGMENTS", "FREE", "EXPERIMENTS"],
          namespaces.map((n) => [
            n.key + (n.archived ? " (archived)" : ""),
            n.unitType,
            count(n.segments),
            count(n.freeSegments),
            n.allocations.map((a) => `${a.experimentKey} (${count(a.segments)})`).join(", ") || "-",
          ]),
        ),
  );
}

export async function showNamespace(ctx: Context, key: string, o: { json?: boolean }) {
  const { namespace } = await ctx.experiments.getNamespace({ key });
  o.json ? printJson(namespaceJson(namespace!)) : print(namespaceDetails(namespace!));
}

export async function allocateSegments(ctx: Context, namespaceKey: string, experimentKey: string, segments: string, o: { json?: boolean }) {
  const { namespace } = await ctx.experiments.allocateSegments({ namespaceKey, experimentKey, segments: parseCount("segments", segments) });
  o.json ? printJson(namespaceJson(namespace!)) : print(namespaceDetails(namespace!));
}

export async function releaseSegments(ctx: Context, namespaceKey: string, experimentKey: string, o: { json?: boolean }) {
  const r = await ctx.experiments.releaseSegments({ namespaceKey, experimentKey });
  o.json
    ? printJson({ released: r.released, namespace: namespaceJson(r.namespace!) })
    : print(`released ${count(r.released)} segments\n` + namespaceDetails(r.namespace!));
}

/** Overrides from `unit=variant` arguments and/or a CSV file of unit_id,variant_key rows. */
export async function setOverrides(ctx: Context, experimentKey: string, pairs: string[], o: { file?: string }) {
  const overrides = pairs.map((p) => {
    const [unitId, variantKey] = parsePair("override", p);
    return { unitId, variantKey };
  });
  if (o.file) {
    let header: string[] | undefined;
    for await (const rec of readCsv(createReadStream(o.file))) {
      if (!header && rec.includes("unit_id")) {
        header = rec;
        continue;
      }
      const u = header ? rec[header.indexOf("unit_id")] : rec[0];
      const v = header ? rec[header.indexOf("variant_key")] : rec[1];
      if (u === undefined || v === undefined)
        throw new UsageError(`--file: every row needs unit_id,variant_key (got ${JSON.stringify(rec)})`);
      overrides.push({ unitId: u, variantKey: v });
    }
  }
  if (overrides.length === 0) throw new UsageError("give overrides as unit=variant arguments or --file");
  let total = 0;
  let version = 0n;
  for (let i = 0; i < overrides.length; i += MAX_OVERRIDES_PER_CALL) {
    const r = await ctx.experiments.setOverrides({ experimentKey, overrides: overrides.slice(i, i + MAX_OVERRIDES_PER_CALL) });
    total += r.count;
    version = r.experimentVersion;
  }
  print(`${experimentKey}: ${count(total)} overrides set (experiment version ${version})`);
}

export async function clearOverrides(ctx: Context, experimentKey: string, unitIds: string[], o: { all?: boolean }) {
  if (!o.all && unitIds.length === 0) throw new UsageError("name the units whose override is removed, or pass --all");
  if (o.all && unitIds.length > 0) throw new UsageError("--all removes every override: name no units with it");
  let total = 0;
  let version = 0n;
  const chunks = o.all
    ? [[]]
    : Array.from({ length: Math.ceil(unitIds.length / MAX_OVERRIDES_PER_CALL) }, (_, i) =>
        unitIds.slice(i * MAX_OVERRIDES_PER_CALL, (i + 1) * MAX_OVERRIDES_PER_CALL),
      );
  for (const chunk of chunks) {
    const r = await ctx.experiments.clearOverrides({ experimentKey, unitIds: chunk, all: o.all ?? false });
    total += r.count;
    version = r.experimentVersion;
  }
  print(`${experimentKey}: ${count(total)} overrides removed (experiment version ${version})`);
}

/** Every override (of one experiment, or of all), read page by page: a table, or JSON lines. */
export async function listOverrides(ctx: Context, experimentKey: string | undefined, o: { pageSize?: string; json?: boolean }) {
  const pageSize = o.pageSize === undefined ? 0 : parseCount("--page-size", o.pageSize);
  const rows: (string | number)[][] = [];
  let pageToken = "";
  do {
    const page = await ctx.experiments.listOverrides({ experimentKey: experimentKey ?? "", pageSize, pageToken });
    for (const x of page.overrides) {
      const setAt = x.setTime ? timestampDate(x.setTime).toISOString() : "";
      if (o.json) {
        print(
          JSON.stringify({
            experimentKey: x.experimentKey,
            unitId: x.unitId,
            variantKey: x.variantKey,
            experimentVersion: Number(x.experimentVersion),
            setTime: setAt,
          }),
        );
      } else rows.push([x.experimentKey, x.unitId, x.variantKey, Number(x.experimentVersion), setAt]);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  if (!o.json) print(rows.length === 0 ? "no overrides" : table(["EXPERIMENT", "UNIT", "VARIANT", "VERSION", "SET"], rows, [3]));
}

const plural = (n: number, what: string) => `${count(n)} ${what}${n === 1 ? "" : "s"}`;

/** Erases units (a data-protection request): ids from arguments and/or a file of one id a line,
 * sent MAX_ERASE_UNITS a call. The ids themselves are never printed. */
export async function eraseUnits(ctx: Context, unitIds: string[], o: { unitType?: string; file?: string; json?: boolean }) {
  const ids = [...unitIds];
  if (o.file) {
    for await (const line of createInterface({ input: createReadStream(o.file), crlfDelay: Number.POSITIVE_INFINITY })) {
      if (line !== "") ids.push(line);
    }
  }
  if (ids.length === 0) throw new UsageError("name the units to erase, or give --file");
  const total = { assignments: 0n, overrides: 0n, units: 0 };
  for (let i = 0; i < ids.length; i += MAX_ERASE_UNITS) {
    const chunk = ids.slice(i, i + MAX_ERASE_UNITS);
    const r = await ctx.experiments.eraseUnits({ unitType: o.unitType ?? "", unitIds: chunk });
    total.assignments += r.assignments;
    total.overrides += r.overrides;
    total.units += chunk.length;
  }
  o.json
    ? printJson({ units: total.units, assignments: Number(total.assignments), overrides: Number(total.overrides) })
    : print(
        `${plural(total.units, "unit")} erased: ${plural(Number(total.assignments), "stored assignment")} and ${plural(Number(total.overrides), "override")} removed`,
      );
}

/** The sample-ratio verdict line. */
export function srmVerdict(s: GetExperimentStatsResponse): string {
  if (s.totalUnits === 0n) return "no units stored by hashing yet: nothing to check";
  const p = s.pValue < 1e-4 ? s.pValue.toExponential(2) : s.pValue.toFixed(4);
  return s.sampleRatioMismatch
    ? `SAMPLE RATIO MISMATCH: p = ${p} < 0.001. The observed split is very unlikely under the configured weights: check how units reach the experiment before trusting its results.`
    : `OK: no sample-ratio mismatch (p = ${p} >= 0.001)`;
}

export function statsTable(s: GetExperimentStatsResponse): string {
  return (
    `experiment ${s.experimentKey} (version ${s.experimentVersion})\n` +
    table(
      ["VARIANT", "EXPECTED", "OBSERVED", "UNITS", "OVERRIDES", "IMPORTED"],
      s.variants.map((v) => [
        v.variantKey,
        percent(v.expectedShare),
        percent(v.observedShare),
        count(v.units),
        count(v.overrides),
        count(v.imported),
      ]),
      [1, 2, 3, 4, 5],
    ) +
    `units stored by hashing: ${count(s.totalUnits)}; chi-square ${s.chiSquare.toFixed(3)} with ${s.degreesOfFreedom} degrees of freedom\n` +
    srmVerdict(s) +
    "\n"
  );
}

export async function stats(ctx: Context, key: string, o: { json?: boolean; failOnSrm?: boolean }) {
  const s = await ctx.experiments.getExperimentStats({ key });
  o.json ? printJson(toJson(GetExperimentStatsResponseSchema, s)) : print(statsTable(s));
  if (o.failOnSrm && s.sampleRatioMismatch) process.exitCode = 3;
}

export { bp };

export interface ChangesOptions {
  experiment?: string;
  namespace?: string;
  holdout?: string;
  cohort?: string;
  job?: string;
  schedule?: string;
  tokenName?: string;
  since?: string;
  until?: string;
  limit?: string;
  json?: boolean;
}

/** The kinds of objects the audit log records, each a `changes` flag naming one object. */
export const CHANGE_KINDS = ["experiment", "namespace", "holdout", "cohort", "job", "schedule"] as const;

/** `--since`/`--until`: an ISO time, or an age before now (90s, 30m, 2h, 7d). */
export function parseTime(flag: string, value: string, now = Date.now()): Date {
  const age = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (age) return new Date(now - Number(age[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as "s" | "m" | "h" | "d"]);
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(d.getTime())) {
    throw new UsageError(`${flag}: "${value}" is neither an ISO time (2026-01-31T12:00:00Z) nor an age (90s, 30m, 2h, 7d)`);
  }
  return d;
}

/** One change as JSON: field values as they are (params included). */
function changeJson(c: Change) {
  return {
    id: c.id.toString(),
    time: timestampDate(c.time!).toISOString(),
    token_name: c.tokenName,
    token_role: c.tokenRole,
    rpc: c.rpc,
    object_kind: c.objectKind,
    object_key: c.objectKey,
    version_before: c.versionBefore?.toString() ?? null,
    version_after: c.versionAfter?.toString() ?? null,
    fields: Object.fromEntries(
      c.fields.map((f) => [
        f.field,
        { before: f.before ? toJson(ValueSchema, f.before) : null, after: f.after ? toJson(ValueSchema, f.after) : null },
      ]),
    ),
  };
}

export async function listChanges(ctx: Context, o: ChangesOptions) {
  const objects = CHANGE_KINDS.filter((kind) => o[kind] !== undefined);
  if (objects.length > 1) throw new UsageError(`${objects.map((k) => `--${k}`).join(", ")}: give one of them`);
  const kind = objects[0];
  const limit = o.limit === undefined ? 50 : parseCount("--limit", o.limit, 0);
  const request: MessageInitShape<typeof ListChangesRequestSchema> = {
    objectKind: kind ?? "",
    objectKey: kind === undefined ? "" : o[kind]!,
    tokenName: o.tokenName ?? "",
    since: o.since === undefined ? undefined : timestampFromDate(parseTime("--since", o.since)),
    until: o.until === undefined ? undefined : timestampFromDate(parseTime("--until", o.until)),
  };
  const changes: Change[] = [];
  let pageToken = "";
  do {
    const want = limit === 0 ? 1000 : Math.min(1000, limit - changes.length);
    const page = await ctx.experiments.listChanges({ ...request, pageSize: want, pageToken });
    changes.push(...page.changes);
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && (limit === 0 || changes.length < limit));
  if (o.json) {
    for (const c of changes) print(JSON.stringify(changeJson(c)));
    return;
  }
  if (changes.length === 0) {
    print("no changes");
    return;
  }
  const value = (v: unknown) => (v === null || v === undefined ? "-" : JSON.stringify(v));
  const versions = (c: Change) =>
    c.versionAfter === undefined ? "" : c.versionBefore === undefined ? `v${c.versionAfter}` : `v${c.versionBefore}→v${c.versionAfter}`;
  const lines: string[] = [];
  for (const c of changes) {
    const j = changeJson(c);
    lines.push(`${j.time}  ${c.tokenName} (${c.tokenRole})  ${c.rpc}  ${c.objectKind} ${c.objectKey}  ${versions(c)}`.trimEnd());
    for (const [field, v] of Object.entries(j.fields)) lines.push(`    ${field}: ${value(v.before)} → ${value(v.after)}`);
  }
  print(lines.join("\n"));
}
