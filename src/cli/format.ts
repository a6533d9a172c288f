import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { ExperimentSchema, ExperimentStatus, NamespaceSchema, Reason, Source, type Experiment, type Namespace } from "assignment-client";
import { UsageError } from "./context.js";

export const reasonName = (r: Reason) => Reason[r] ?? String(r);
export const sourceName = (s: Source) => Source[s] ?? String(s);
export const statusName = (s: ExperimentStatus) => ExperimentStatus[s] ?? String(s);

export function parseStatus(value: string): ExperimentStatus {
  const s = (ExperimentStatus as unknown as Record<string, ExperimentStatus | undefined>)[value.toUpperCase()];
  if (s === undefined || s === ExperimentStatus.UNSPECIFIED)
    throw new UsageError(`status: "${value}" is not one of draft, running, paused, stopped`);
  return s;
}

/** Basis points from "5000" or "50%" (two decimals at most). */
export function parseBasisPoints(field: string, value: string): number {
  const m = /^(\d+(?:\.\d{1,2})?)(%)?$/.exec(value.trim());
  if (!m) throw new UsageError(`${field}: "${value}" is neither basis points (0..10000) nor a percentage like 12.5%`);
  const n = m[2] ? Math.round(Number(m[1]) * 100) : Number(m[1]);
  if (!Number.isInteger(n) || n < 0 || n > 10_000) throw new UsageError(`${field}: "${value}" is outside 0..10000 basis points (0%..100%)`);
  return n;
}

export function parseJsonObject(field: string, value: string): Record<string, JsonValue> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch (err) {
    throw new UsageError(`${field}: not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new UsageError(`${field}: must be a JSON object`);
  return v as Record<string, JsonValue>;
}

export function parseCount(field: string, value: string, min = 1): number {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${field}: "${value}" is not an integer ≥ ${min}`);
  return Number(value);
}

export const percent = (share: number, digits = 2) => `${(share * 100).toFixed(digits)}%`;
export const bp = (basisPoints: number) => percent(basisPoints / 10_000);
export const count = (n: number | bigint) => Number(n).toLocaleString("en-US");

/** A plain text table: columns padded to their widest cell; `right` names right-aligned columns. */
export function table(header: string[], rows: (string | number)[][], right: number[] = []): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return (
    cells
      .map((r) =>
        r
          .map((c, i) => (right.includes(i) ? c.padStart(widths[i]) : i === r.length - 1 ? c : c.padEnd(widths[i])))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

export const experimentJson = (e: Experiment) => toJson(ExperimentSchema, e);
export const namespaceJson = (n: Namespace) => toJson(NamespaceSchema, n);

export function experimentTable(list: readonly Experiment[]): string {
  return table(
    ["KEY", "STATUS", "UNIT TYPE", "VARIANTS", "ROLLOUT", "NAMESPACE", "VERSION"],
    list.map((e) => [
      e.key,
      statusName(e.status) + (e.winner ? ` (winner ${e.winner})` : "") + (e.archived ? ", archived" : ""),
      e.unitType,
      e.variants.map((v) => `${v.key} ${bp(v.weight)}`).join(", "),
      bp(e.rollout),
      e.namespace ? `${e.namespace} (${count(e.segments)} segments)` : "-",
      String(e.version),
    ]),
  );
}

export function experimentDetails(e: Experiment): string {
  const time = (t: Experiment["createTime"]) => (t ? new Date(Number(t.seconds) * 1000 + Math.round(t.nanos / 1e6)).toISOString() : "-");
  const lines = [
    `key              ${e.key}`,
    `status           ${statusName(e.status)}${e.archived ? `, archived ${time(e.archiveTime)} (answers UNKNOWN_EXPERIMENT)` : ""}`,
    `version          ${e.version}`,
    `unit type        ${e.unitType}`,
    `salt             ${e.salt}`,
    `rollout          ${bp(e.rollout)} (${e.rollout} basis points)`,
    `default variant  ${e.defaultVariant}`,
    `winner           ${e.winner || "-"}`,
    `namespace        ${e.namespace ? `${e.namespace}, ${count(e.segments)} segments` : "-"}`,
    `tags             ${e.tags.join(", ") || "-"}`,
    `description      ${e.description || "-"}`,
    `targeting        ${e.condition || "- (every unit)"}`,
    `created          ${time(e.createTime)}`,
    `updated          ${time(e.updateTime)}`,
    "",
  ].join("\n");
  return (
    lines +
    table(
      ["VARIANT", "WEIGHT", "PARAMS"],
      e.variants.map((v) => [v.key, bp(v.weight), v.params && Object.keys(v.params).length > 0 ? JSON.stringify(v.params) : "-"]),
    )
  );
}

export function namespaceDetails(n: Namespace): string {
  return (
    [
      `key            ${n.key}`,
      `salt           ${n.salt}`,
      `unit type      ${n.unitType}`,
      `segments       ${count(n.segments)} (${count(n.freeSegments)} free)`,
      `default params ${n.defaultParams && Object.keys(n.defaultParams).length > 0 ? JSON.stringify(n.defaultParams) : "-"}`,
      ...(n.archived ? ["archived       yes (takes no allocations)"] : []),
      `version        ${n.version}`,
      "",
    ].join("\n") +
    (n.allocations.length === 0
      ? "no experiment holds segments\n"
      : table(
          ["EXPERIMENT", "SEGMENTS", "SHARE"],
          n.allocations.map((a) => [a.experimentKey, count(a.segments), percent(a.segments / n.segments)]),
          [1, 2],
        ))
  );
}
