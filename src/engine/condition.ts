/**
 * Targeting conditions (SPEC.md rule 8, "Names and limits"): a CEL expression over `attributes`,
 * compiled once when an experiment's configuration is loaded and tested per unit. CEL is
 * evaluated by @bufbuild/cel (the protobuf stack's CEL implementation); this module adds what a
 * condition must satisfy when saved, and the rule that at evaluation anything but `true` (false, a
 * missing attribute, a type error, any other error) is "not true" and never fails the call.
 *
 * `attributes` is a map from string keys to dynamic values; numbers are CEL doubles (as JSON
 * numbers are in CEL), so `attributes.version >= 5` compares as expected and arithmetic with
 * them takes double literals (`attributes.price * 1.5`).
 */
import { CelScalar, celEnv, isCelError, mapType, parse, plan } from "@bufbuild/cel";
import { invalidArgument } from "../errors.js";
import type { Attributes } from "./attributes.js";
import { utf8ByteLength } from "./utf8.js";

/** SPEC.md: at most 4096 bytes. */
export const MAX_CONDITION_BYTES = 4096;

const env = celEnv({ variables: { attributes: mapType(CelScalar.STRING, CelScalar.DYN) } });

/** A compiled condition: `test` is true only when the expression evaluates to `true`. */
export interface Condition {
  readonly source: string;
  test(attributes: Attributes): boolean;
}

type ParsedExpr = ReturnType<typeof parse>;
type Expr = NonNullable<ParsedExpr["expr"]>;

/** Operators the evaluator handles itself (short-circuiting), not through its functions. */
const SPECIAL_FORMS = new Set(["_&&_", "_||_", "_?_:_", "@not_strictly_false"]);

/** Functions that never return a bool: a condition that is one of them can never be true. */
const NOT_BOOLEAN = new Set([
  "_+_",
  "_-_",
  "_*_",
  "_/_",
  "_%_",
  "-_",
  "size",
  "string",
  "int",
  "uint",
  "double",
  "bytes",
  "duration",
  "timestamp",
  "type",
]);

/**
 * Compiles `source`; throws INVALID_ARGUMENT naming `field` and, where it can, the line and column
 * at fault: too long, does not parse, names a variable other than `attributes` (or a comprehension's
 * own), calls a function CEL does not have, or can never be a boolean.
 */
export function compileCondition(field: string, source: string): Condition {
  const bytes = utf8ByteLength(source);
  if (bytes > MAX_CONDITION_BYTES) throw invalidArgument(field, `must be at most ${MAX_CONDITION_BYTES} bytes (got ${bytes})`);
  if (source.trim() === "") throw invalidArgument(field, "must be a CEL expression over attributes (empty)");
  let parsed: ParsedExpr;
  try {
    parsed = parse(source);
  } catch (err) {
    // "<input>:1:20: found = but expecting end of input"
    const m = /^<input>:(\d+):(\d+): (.*)$/s.exec((err as Error).message);
    throw invalidArgument(
      field,
      m ? `does not parse as CEL at line ${m[1]}, column ${Number(m[2]) + 1}: ${m[3]}` : `does not parse as CEL: ${(err as Error).message}`,
    );
  }
  const root = parsed.expr;
  if (!root) throw invalidArgument(field, "must be a CEL expression over attributes (empty)");
  const at = (e: Expr) => position(source, parsed, e);
  checkNames(field, root, new Set(["attributes"]), at);
  checkBoolean(field, root, at);
  const run = plan(env, parsed);
  return {
    source,
    test(attributes) {
      try {
        const r = run({ attributes: attributes as Map<string, never> });
        return r === true && !isCelError(r);
      } catch {
        return false;
      }
    },
  };
}

function checkNames(field: string, e: Expr, scope: ReadonlySet<string>, at: (e: Expr) => string): void {
  const k = e.exprKind;
  switch (k.case) {
    case "identExpr":
      if (!scope.has(k.value.name)) {
        throw invalidArgument(
          field,
          `${at(e)}: unknown variable "${k.value.name}" (a condition reads attributes, e.g. attributes.country)`,
        );
      }
      return;
    case "selectExpr":
      if (k.value.operand) checkNames(field, k.value.operand, scope, at);
      return;
    case "callExpr":
      if (!SPECIAL_FORMS.has(k.value.function) && !env.funcs.find(k.value.function))
        throw invalidArgument(field, `${at(e)}: unknown function "${k.value.function}"`);
      if (k.value.target) checkNames(field, k.value.target, scope, at);
      for (const a of k.value.args) checkNames(field, a, scope, at);
      return;
    case "listExpr":
      for (const x of k.value.elements) checkNames(field, x, scope, at);
      return;
    case "structExpr":
      for (const entry of k.value.entries) {
        if (entry.keyKind.case === "mapKey") checkNames(field, entry.keyKind.value, scope, at);
        if (entry.value) checkNames(field, entry.value, scope, at);
      }
      return;
    case "comprehensionExpr": {
      const c = k.value;
      if (c.iterRange) checkNames(field, c.iterRange, scope, at);
      if (c.accuInit) checkNames(field, c.accuInit, scope, at);
      const inner = new Set([...scope, c.iterVar, c.accuVar, ...(c.iterVar2 ? [c.iterVar2] : [])]);
      for (const x of [c.loopCondition, c.loopStep, c.result]) if (x) checkNames(field, x, inner, at);
      return;
    }
    default:
      return;
  }
}

function checkBoolean(field: string, e: Expr, at: (e: Expr) => string): void {
  const k = e.exprKind;
  const never =
    (k.case === "constExpr" && k.value.constantKind.case !== "boolValue") ||
    k.case === "listExpr" ||
    k.case === "structExpr" ||
    (k.case === "identExpr" && k.value.name === "attributes") ||
    (k.case === "callExpr" && NOT_BOOLEAN.has(k.value.function));
  if (never) throw invalidArgument(field, `${at(e)}: must be a boolean expression (true for the units to target)`);
}

/** "line L, column C" of an expression, from the parser's offsets. */
function position(source: string, parsed: ParsedExpr, e: Expr): string {
  const offset = parsed.sourceInfo?.positions[String(e.id)] ?? 0;
  const before = [...source].slice(0, offset).join("");
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  return `line ${line}, column ${column}`;
}
