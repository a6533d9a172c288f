#!/usr/bin/env python3
"""SPEC.md "Hashing (hash version 1)" in pure Python (standard library only).

H(s) is MurmurHash3 x86 32-bit of the UTF-8 bytes of s, seed 0, unsigned; written here from the
algorithm, so it needs no mmh3 package. On top of it, the SPEC formulas:

    variant bucket  = H(unit_id + ":" + salt) mod 10000
    rollout bucket  = H(unit_id + ":" + salt + ":rollout") mod 10000
    segment         = H(unit_id + ":" + namespace_salt) mod segments
    variant         = the first variant i with bucket < weight_0 + ... + weight_i

Usage:
    spec_hash.py check [VECTORS]   check every case of the golden vectors (default:
                                   ../../spec/vectors/assignment-v1.json from this file);
                                   prints one JSON line of counts per section, then
                                   "N passed, N failed"; exits 1 on any mismatch
    spec_hash.py evaluate          reads a JSON list of {"unit_id", "salt", "weights", "rollout"}
                                   on stdin, writes a JSON list of variant indexes (null: not
                                   enrolled by the rollout) with both buckets
    spec_hash.py hash STRING...    prints H of each string
"""

import json
import os
import sys

_MASK = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & _MASK


def murmur3_x86_32(data, seed=0):
    """MurmurHash3_x86_32 of `data` (bytes), as an unsigned 32-bit integer."""
    h = seed & _MASK
    length = len(data)
    body = length - (length % 4)
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _C1) & _MASK
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = data[body:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * _C1) & _MASK
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
    # Finalization mix: force all bits of the hash block to avalanche.
    h ^= length & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def H(s):
    """SPEC's H: MurmurHash3 x86 32 of the UTF-8 bytes of `s`, seed 0, unsigned."""
    return murmur3_x86_32(s.encode("utf-8"), 0)


def variant_bucket(unit_id, salt):
    return H(unit_id + ":" + salt) % 10000


def rollout_bucket(unit_id, salt):
    return H(unit_id + ":" + salt + ":rollout") % 10000


def segment(unit_id, namespace_salt, segments):
    return H(unit_id + ":" + namespace_salt) % segments


def variant_index(unit_id, salt, weights):
    """Index of the first variant whose cumulative weight exceeds the variant bucket."""
    bucket = variant_bucket(unit_id, salt)
    cumulative = 0
    for i, w in enumerate(weights):
        cumulative += w
        if bucket < cumulative:
            return i
    raise ValueError("weights sum to %d, bucket %d falls outside" % (cumulative, bucket))


def evaluate(unit_id, salt, weights, rollout=10000):
    """The hashed variant index of a unit, or None when the rollout leaves it out."""
    if rollout_bucket(unit_id, salt) >= rollout:
        return None
    return variant_index(unit_id, salt, weights)


def _default_vectors():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "spec", "vectors", "assignment-v1.json"))


def check(path):
    """Checks every case of the vector file; returns (per-section counts, mismatches)."""
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    checks = {
        "hash": lambda c: ({"hash": H(c["input"])}, {"hash": c["hash"]}),
        "buckets": lambda c: (
            {"variant_bucket": variant_bucket(c["unit_id"], c["salt"]), "rollout_bucket": rollout_bucket(c["unit_id"], c["salt"])},
            {"variant_bucket": c["variant_bucket"], "rollout_bucket": c["rollout_bucket"]},
        ),
        "segments": lambda c: (
            {"segment": segment(c["unit_id"], c["namespace_salt"], c["segments"])},
            {"segment": c["segment"]},
        ),
        "evaluate": lambda c: (
            {"variant": evaluate(c["unit_id"], c["salt"], c["weights"], c["rollout"])},
            {"variant": c["variant"]},
        ),
    }
    counts = {}
    mismatches = []
    for section, run in checks.items():
        cases = vectors.get(section, [])
        passed = 0
        for i, case in enumerate(cases):
            got, want = run(case)
            if got == want:
                passed += 1
            else:
                mismatches.append({"section": section, "case": i, "input": case, "got": got})
        counts[section] = {"cases": len(cases), "passed": passed, "failed": len(cases) - passed}
    return counts, mismatches


def main(argv):
    mode = argv[1] if len(argv) > 1 else "check"
    if mode == "check":
        path = argv[2] if len(argv) > 2 else _default_vectors()
        counts, mismatches = check(path)
        for m in mismatches[:20]:
            print(json.dumps({"mismatch": m}, ensure_ascii=False), file=sys.stderr)
        print(json.dumps({"vectors": path, "counts": counts}))
        passed = sum(c["passed"] for c in counts.values())
        failed = sum(c["failed"] for c in counts.values())
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed or not passed else 0
    if mode == "evaluate":
        cases = json.load(sys.stdin)
        out = [
            {
                "variant": evaluate(c["unit_id"], c["salt"], c["weights"], c.get("rollout", 10000)),
                "variant_bucket": variant_bucket(c["unit_id"], c["salt"]),
                "rollout_bucket": rollout_bucket(c["unit_id"], c["salt"]),
            }
            for c in cases
        ]
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    if mode == "hash":
        for s in argv[2:]:
            print(H(s))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
