import type { JsonObject } from "@bufbuild/protobuf";

/**
 * The params a unit gets from a namespace (SPEC.md "Namespaces"): the namespace's defaults, then
 * the params of the variant it got laid over them key by key at the top level (a key the variant
 * sets replaces the default's value whole, objects included; keys it does not set keep the
 * default). `variantParams` is undefined when the unit got no variant params (no experiment of
 * the namespace holds it, or its variant has none).
 */
export function mergeParams(defaults: JsonObject | undefined, variantParams: JsonObject | undefined): JsonObject {
  return { ...defaults, ...variantParams };
}
