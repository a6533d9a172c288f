import { toJson } from "@bufbuild/protobuf";
import { type Holdout, HoldoutSchema, paramsByNamespace, ResolvedParamsSchema } from "assignment-client";
import { type Context, UsageError } from "./context.js";
import { bp, count, parseBasisPoints, parseCount, percent, reasonName, table } from "./format.js";

const print = (text: string) => process.stdout.write(text.endsWith("\n") ? text : text + "\n");
const printJson = (value: unknown) => print(JSON.stringify(value, null, 2));

/** `assignment holdouts …` (SPEC.md "Holdouts") and `assignment params` (namespace parameters). */

const holdoutJson = (h: Holdout) => toJson(HoldoutSchema, h);

function holdoutDetails(h: Holdout): string {
  return [
    `key            ${h.key}`,
    `salt           ${h.salt}`,
    `unit type      ${h.unitType}`,
    `share          ${bp(h.share)} (${h.share} basis points held out)`,
    `tags           ${h.tags.length > 0 ? h.tags.join(", ") : `(none: every ${h.unitType} experiment)`}`,
    `covers         ${h.experimentKeys.length > 0 ? h.experimentKeys.join(", ") : "no experiment now"}`,
    `version        ${h.version}`,
  ].join("\n");
}

/** "a,b,c" -> tags; "" -> none. */
const tagList = (value: string) => (value.trim() === "" ? [] : value.split(",").map((t) => t.trim()));

export async function createHoldout(
  ctx: Context,
  key: string,
  o: { share?: string; unitType?: string; salt?: string; tags?: string; json?: boolean },
) {
  if (o.share === undefined) throw new UsageError("--share: give the share held out, in basis points or percent (e.g. --share 5%)");
  const { holdout } = await ctx.experiments.createHoldout({
    key,
    salt: o.salt,
    unitType: o.unitType ?? "",
    share: parseBasisPoints("--share", o.share),
    tags: o.tags === undefined ? [] : tagList(o.tags),
  });
  o.json ? printJson(holdoutJson(holdout!)) : print(holdoutDetails(holdout!));
}

export async function showHoldout(ctx: Context, key: string, o: { json?: boolean }) {
  const { holdout } = await ctx.experiments.getHoldout({ key });
  o.json ? printJson(holdoutJson(holdout!)) : print(holdoutDetails(holdout!));
}

export async function listHoldouts(ctx: Context, o: { json?: boolean }) {
  const { holdouts } = await ctx.experiments.listHoldouts({});
  if (o.json) {
    printJson(holdouts.map(holdoutJson));
    return;
  }
  print(
    holdouts.length === 0
      ? "no holdouts"
      : table(
          ["KEY", "UNIT TYPE", "SHARE", "TAGS", "COVERS"],
          holdouts.map((h) => [h.key, h.unitType, bp(h.share), h.tags.join(", ") || "(all)", h.experimentKeys.join(", ") || "-"]),
        ),
  );
}

export async function updateHoldout(ctx: Context, key: string, o: { share?: string; tags?: string; version?: string; json?: boolean }) {
  if (o.share === undefined && o.tags === undefined)
    throw new UsageError("give --share and/or --tags (key, salt and unit type never change)");
  const { holdout } = await ctx.experiments.updateHoldout({
    key,
    share: o.share === undefined ? undefined : parseBasisPoints("--share", o.share),
    tags: o.tags === undefined ? undefined : { tags: tagList(o.tags) },
    version: o.version === undefined ? undefined : BigInt(parseCount("--version", o.version)),
  });
  o.json ? printJson(holdoutJson(holdout!)) : print(holdoutDetails(holdout!));
}

export async function holdoutStats(ctx: Context, key: string, o: { json?: boolean }) {
  const stats = await ctx.experiments.getHoldoutStats({ key });
  if (o.json) {
    printJson({
      holdout: stats.holdoutKey,
      share: stats.share,
      experiments: stats.experiments.map((e) => ({ experiment: e.experimentKey, held_out: Number(e.heldOut), exposed: Number(e.exposed) })),
    });
    return;
  }
  print(
    `${stats.holdoutKey}: ${bp(stats.share)} held out\n` +
      (stats.experiments.length === 0
        ? "it covers no experiment now"
        : table(
            ["EXPERIMENT", "HELD OUT", "EXPOSED", "HELD-OUT SHARE"],
            stats.experiments.map((e) => {
              const total = Number(e.heldOut) + Number(e.exposed);
              return [e.experimentKey, count(e.heldOut), count(e.exposed), total === 0 ? "-" : percent(Number(e.heldOut) / total)];
            }),
            [1, 2, 3],
          )),
  );
}

/** `assignment params <unit>`: the unit's params per namespace (ResolveParams). */
export async function resolveParams(
  ctx: Context,
  unitId: string,
  o: { namespace?: string[]; tag?: string; unitType?: string; dryRun?: boolean; json?: boolean },
) {
  const response = await ctx.assignments.resolveParams({
    units: { [o.unitType ?? "user_id"]: unitId },
    namespaceKeys: o.namespace ?? [],
    tag: o.tag ?? "",
    options: { dryRun: o.dryRun ?? false },
  });
  if (o.json) {
    printJson(response.namespaces.map((n) => toJson(ResolvedParamsSchema, n)));
    return;
  }
  if (response.namespaces.length === 0) {
    print("no namespace answered (none of this unit type, or none holds an experiment with the tag)");
    return;
  }
  const lines: string[] = [];
  for (const [key, a] of paramsByNamespace(response.namespaces)) {
    const from = a.experimentKey
      ? `${a.experimentKey} / ${a.variantKey || "(no variant)"}, ${reasonName(a.reason)}`
      : "defaults (no experiment holds the unit)";
    lines.push(`${key}: ${from}`, `  ${JSON.stringify(a.params.toJson())}`);
  }
  print(lines.join("\n"));
}
