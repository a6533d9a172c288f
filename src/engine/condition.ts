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
import type { Attributes, AttributeValue } from "./attributes.js";
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
export function compileCondition(field: string, source: string, engine: "auto" | "cel" = "auto"): Condition {
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
  // The common shapes (comparisons of attributes with literals, `in`, `has`, `&&`, `||`, `!`) run
  // as closures with CEL's semantics, several times faster than the general evaluator; anything
  // else, through it. test/engine/condition.test.ts checks that both agree.
  const fast = engine === "auto" ? fastCondition(root) : undefined;
  if (fast) return { source, test: (attributes) => fast(attributes) === true };
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

// ------------------------------------------------------------------ the fast subset

/** A runtime error (no such attribute, no matching overload): never true. */
const ERR: unique symbol = Symbol("error");
type Val = AttributeValue | typeof ERR;
type Fn = (a: Attributes) => Val;

/** CEL equality of two values (numbers compare numerically whatever their CEL type; values of
 * different types are unequal). */
function celEquals(x: AttributeValue, y: AttributeValue): boolean {
  if (Array.isArray(x)) {
    if (!Array.isArray(y) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!celEquals(x[i]!, y[i]!)) return false;
    return true;
  }
  return x === y;
}

/** -1, 0, 1 for two values of one orderable type, else ERR (CEL has no mixed ordering but numbers). */
function celCompare(x: AttributeValue, y: AttributeValue): number | typeof ERR {
  if (typeof x === "number" && typeof y === "number") return x < y ? -1 : x > y ? 1 : 0;
  if (typeof x === "boolean" && typeof y === "boolean") return x === y ? 0 : x ? 1 : -1;
  if (typeof x === "string" && typeof y === "string") {
    // By code point, as CEL does (JS's < compares UTF-16 code units).
    const a = [...x];
    const b = [...y];
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const d = a[i]!.codePointAt(0)! - b[i]!.codePointAt(0)!;
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }
  return ERR;
}

const isAttributes = (e: Expr | undefined) => e?.exprKind.case === "identExpr" && e.exprKind.value.name === "attributes";

const ORDER: Record<string, (c: number) => boolean> = {
  "_<_": (c) => c < 0,
  "_<=_": (c) => c <= 0,
  "_>_": (c) => c > 0,
  "_>=_": (c) => c >= 0,
};

/** A closure for `e` when it is in the fast subset, else undefined. */
function fastCondition(e: Expr): Fn | undefined {
  const k = e.exprKind;
  switch (k.case) {
    case "constExpr": {
      const c = k.value.constantKind;
      let v: AttributeValue;
      if (c.case === "boolValue" || c.case === "stringValue" || c.case === "doubleValue") v = c.value;
      else if ((c.case === "int64Value" || c.case === "uint64Value") && Number.isSafeInteger(Number(c.value))) v = Number(c.value);
      else return undefined;
      return () => v;
    }
    case "selectExpr": {
      if (!isAttributes(k.value.operand)) return undefined;
      const name = k.value.field;
      if (k.value.testOnly) return (a) => a.has(name);
      return (a) => a.get(name) ?? ERR;
    }
    case "listExpr": {
      const items = k.value.elements.map(fastCondition);
      if (items.some((f) => f === undefined) || k.value.optionalIndices.length > 0) return undefined;
      const fs = items as Fn[];
      const list = (a: Attributes): Val => {
        const out: AttributeValue[] = [];
        for (const f of fs) {
          const v = f(a);
          if (v === ERR) return ERR;
          out.push(v);
        }
        return out as AttributeValue;
      };
      // A list of literals (`in ["US", "CA"]`) is made once.
      if (k.value.elements.every((x) => x.exprKind.case === "constExpr")) {
        const v = list(new Map());
        return () => v;
      }
      return list;
    }
    case "callExpr":
      return fastCall(k.value.function, k.value.target, k.value.args);
    default:
      return undefined;
  }
}

function fastCall(fn: string, target: Expr | undefined, args: readonly Expr[]): Fn | undefined {
  if (target) return undefined;
  if (fn === "@in" && args.length === 2 && isAttributes(args[1])) {
    const key = fastCondition(args[0]!);
    if (!key) return undefined;
    return (a) => {
      const v = key(a);
      return v === ERR ? ERR : typeof v === "string" ? a.has(v) : ERR;
    };
  }
  const fs = args.map(fastCondition);
  if (fs.some((f) => f === undefined)) return undefined;
  const [x, y] = fs as Fn[];
  switch (fn) {
    case "_&&_":
      return (a) => {
        let err = false;
        for (const f of fs as Fn[]) {
          const v = f(a);
          if (v === false) return false;
          if (v !== true) err = true;
        }
        return err ? ERR : true;
      };
    case "_||_":
      return (a) => {
        let err = false;
        for (const f of fs as Fn[]) {
          const v = f(a);
          if (v === true) return true;
          if (v !== false) err = true;
        }
        return err ? ERR : false;
      };
    case "!_":
      if (fs.length !== 1) return undefined;
      return (a) => {
        const v = x!(a);
        return typeof v === "boolean" ? !v : ERR;
      };
    case "_==_":
    case "_!=_": {
      if (fs.length !== 2) return undefined;
      const equal = fn === "_==_";
      return (a) => {
        const l = x!(a);
        if (l === ERR) return ERR;
        const r = y!(a);
        if (r === ERR) return ERR;
        return celEquals(l, r) === equal;
      };
    }
    case "@in":
      if (fs.length !== 2) return undefined;
      return (a) => {
        const l = x!(a);
        if (l === ERR) return ERR;
        const r = y!(a);
        if (r === ERR || !Array.isArray(r)) return ERR;
        for (const item of r) if (celEquals(l, item)) return true;
        return false;
      };
    default: {
      const order = ORDER[fn];
      if (!order || fs.length !== 2) return undefined;
      return (a) => {
        const l = x!(a);
        if (l === ERR) return ERR;
        const r = y!(a);
        if (r === ERR) return ERR;
        const c = celCompare(l, r);
        return c === ERR ? ERR : order(c);
      };
    }
  }
}
