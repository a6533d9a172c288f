import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { ExperimentStatus } from "../../gen/ts/assignment/v1/types_pb.js";
import { invalidArgument } from "../errors.js";
import { MAX_DESCRIPTION_BYTES, MAX_EXPERIMENT_PARAMS_BYTES, MAX_PARAMS_BYTES, MAX_TAGS } from "assignment-client/limits";
import { checkKey, MAX_PARAMS_DEPTH } from "./rules.js";
import { utf8ByteLength } from "./utf8.js";

/** The rules of an experiment's fields beyond SPEC.md's names (rules.ts): status, tags,
 * description, params, and the variants that default and winner name. Each `check…` throws
 * INVALID_ARGUMENT naming the field and the rule, and returns the value as stored. */

const STATUSES: readonly ExperimentStatus[] = [
  ExperimentStatus.DRAFT,
  ExperimentStatus.RUNNING,
  ExperimentStatus.PAUSED,
  ExperimentStatus.STOPPED,
];

export function checkStatus(field: string, s: ExperimentStatus): ExperimentStatus {
  if (!STATUSES.includes(s)) throw invalidArgument(field, "must be DRAFT, RUNNING, PAUSED or STOPPED");
  return s;
}

/** At most MAX_TAGS keys; repeats are dropped. */
export function checkTags(field: string, tags: readonly string[]): string[] {
  if (tags.length > MAX_TAGS) throw invalidArgument(field, `must hold at most ${MAX_TAGS} tags`);
  tags.forEach((t, i) => checkKey(`${field}[${i}]`, t));
  return [...new Set(tags)];
}

export function checkDescription(field: string, d: string): string {
  if (utf8ByteLength(d) > MAX_DESCRIPTION_BYTES || d.includes("\u0000")) {
    throw invalidArgument(field, `must be at most ${MAX_DESCRIPTION_BYTES} bytes without U+0000`);
  }
  return d;
}

/** `key` if it names one of `variants`. */
export function checkVariantNamed(field: string, variants: readonly { key: string }[], key: string): string {
  if (!variants.some((v) => v.key === key)) {
    throw invalidArgument(field, `must name one of the variants (${variants.map((v) => v.key).join(", ")})`);
  }
  return key;
}

const jsonBytes = (value: JsonValue) => utf8ByteLength(JSON.stringify(value));

/** A variant's params: none when empty; else JSON that jsonb can hold, nested at most
 * MAX_PARAMS_DEPTH deep (SPEC.md "Names and limits"), at most MAX_PARAMS_BYTES. */
export function checkParams(field: string, params: JsonObject | undefined): JsonObject | undefined {
  if (!params || Object.keys(params).length === 0) return undefined;
  checkJson(field, params, 1);
  if (jsonBytes(params) > MAX_PARAMS_BYTES) throw invalidArgument(field, `must be at most ${MAX_PARAMS_BYTES} bytes as JSON`);
  return params;
}

/** The params of all variants together, at most MAX_EXPERIMENT_PARAMS_BYTES. */
export function checkParamsTotal(field: string, variants: readonly { params?: JsonObject | undefined }[]): void {
  const total = variants.reduce((n, v) => n + (v.params ? jsonBytes(v.params) : 0), 0);
  if (total > MAX_EXPERIMENT_PARAMS_BYTES) {
    throw invalidArgument(
      field,
      `params of all variants together must be at most ${MAX_EXPERIMENT_PARAMS_BYTES} bytes as JSON (got ${total})`,
    );
  }
}

/** Params are stored as jsonb, which cannot hold U+0000, and JSON has no NaN or infinities (a
 * Struct's number_value can): refused naming the field rather than failing in the database or
 * being stored as null. Objects and lists nest at most MAX_PARAMS_DEPTH deep (`depth` is that of
 * `value` when it is one). */
function checkJson(field: string, value: JsonValue, depth: number): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalidArgument(field, "numbers must be finite (JSON has no NaN or infinities)");
  } else if (typeof value === "string") {
    if (value.includes("\u0000")) throw invalidArgument(field, "must not contain U+0000");
  } else if (value !== null && typeof value === "object") {
    if (depth > MAX_PARAMS_DEPTH) {
      throw invalidArgument(
        field,
        `must nest objects and lists at most ${MAX_PARAMS_DEPTH} levels deep (the params object is level 1; every protobuf runtime can read that back)`,
      );
    }
    if (Array.isArray(value)) {
      for (const x of value) checkJson(field, x, depth + 1);
    } else {
      for (const [k, x] of Object.entries(value)) {
        if (k.includes("\u0000")) throw invalidArgument(field, "must not contain U+0000");
        checkJson(field, x, depth + 1);
      }
    }
  }
}
