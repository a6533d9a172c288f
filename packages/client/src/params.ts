import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { ParamsColumn, ResolvedParams } from "./gen/assignment/v1/assignment_service_pb.js";
import type { Reason } from "./gen/assignment/v1/types_pb.js";

/**
 * Typed access to params (a variant's, or a namespace's merged ones from ResolveParams): a value
 * of the asked type, or the caller's default when the key is missing or holds another type, so a
 * page never breaks because a param is absent or was mistyped in an experiment.
 *
 *     const params = new Params(answer.params);
 *     const color = params.getString("button_color", "blue");
 */
export class Params {
  private readonly values: JsonObject;

  constructor(params: JsonObject | undefined | null = undefined) {
    this.values = params ?? {};
  }

  /** Whether the key is set (to any value, null included). */
  has(key: string): boolean {
    return Object.hasOwn(this.values, key);
  }

  /** Every param, as JSON. */
  toJson(): JsonObject {
    return { ...this.values };
  }

  getString(key: string, fallback: string): string {
    const v = this.values[key];
    return typeof v === "string" ? v : fallback;
  }

  /** A finite number (a boolean or a numeric string is not one). */
  getNumber(key: string, fallback: number): number {
    const v = this.values[key];
    return typeof v === "number" && Number.isFinite(v) ? v : fallback;
  }

  getBool(key: string, fallback: boolean): boolean {
    const v = this.values[key];
    return typeof v === "boolean" ? v : fallback;
  }

  getList(key: string, fallback: readonly JsonValue[] = []): JsonValue[] {
    const v = this.values[key];
    return Array.isArray(v) ? [...v] : [...fallback];
  }

  /** A nested object, itself as Params (the fallback's when the key holds no object). */
  getObject(key: string, fallback: JsonObject = {}): Params {
    const v = this.values[key];
    return new Params(v !== null && typeof v === "object" && !Array.isArray(v) ? v : fallback);
  }
}

/** One namespace's answer of ResolveParams, with its params as Params. */
export interface NamespaceParams {
  namespaceKey: string;
  params: Params;
  experimentKey: string;
  variantKey: string;
  reason: Reason;
  enrolled: boolean;
  stored: boolean;
}

/** A ResolveParams response's answers by namespace key. */
export function paramsByNamespace(answers: readonly ResolvedParams[]): Map<string, NamespaceParams> {
  return new Map(
    answers.map((a) => [
      a.namespaceKey,
      {
        namespaceKey: a.namespaceKey,
        params: new Params(a.params),
        experimentKey: a.experimentKey,
        variantKey: a.variantKey,
        reason: a.reason,
        enrolled: a.enrolled,
        stored: a.stored,
      },
    ]),
  );
}

/** Unpacks a BulkResolveParams column into one answer per requested unit, in order. */
export function paramsColumnAnswers(column: ParamsColumn): NamespaceParams[] {
  const legend = column.legend.map((c) => new Params(c.params));
  return column.legendIndexes.map((index, i) => {
    const choice = column.legend[index];
    return {
      namespaceKey: column.namespaceKey,
      params: legend[index] ?? new Params(),
      experimentKey: choice?.experimentKey ?? "",
      variantKey: choice?.variantKey ?? "",
      reason: column.reasons[i]!,
      enrolled: column.enrolled[i]!,
      stored: column.stored[i]!,
    };
  });
}
