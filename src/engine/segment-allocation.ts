import { resourceExhausted } from "../errors.js";
import { type HashVersion, hash } from "./hash.js";

/** A namespace's segment space, as allocation sees it. */
export interface SegmentSpace {
  key: string;
  salt: string;
  segments: number;
  hashVersion: HashVersion;
}

/**
 * The segments an allocation of `count` more to `experimentKey` takes (SPEC.md "Namespaces"): free
 * segments (0..segments-1, not in `taken`) ordered by `H(namespace_salt + ":" + experiment_key +
 * ":" + segment)` of the namespace's hash version, then by segment, and the first `count` of
 * them: spread pseudo-randomly over the space, and reproducible. Nothing taken moves. Fewer free
 * than asked is RESOURCE_EXHAUSTED.
 */
export function pickSegments(space: SegmentSpace, taken: Iterable<number>, experimentKey: string, count: number): number[] {
  const used = new Uint8Array(space.segments);
  for (const s of taken) used[s] = 1;
  const free: number[] = [];
  for (let s = 0; s < space.segments; s++) if (!used[s]) free.push(s);
  if (count > free.length) {
    throw resourceExhausted(`segments: asked for ${count} segments, namespace "${space.key}" has ${free.length} free`);
  }
  const rank = new Map(free.map((s) => [s, hash(`${space.salt}:${experimentKey}:${s}`, space.hashVersion)]));
  free.sort((a, b) => rank.get(a)! - rank.get(b)! || a - b);
  return free.slice(0, count);
}
