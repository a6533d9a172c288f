#!/usr/bin/env python3
"""SPEC.md "Hashing (hash version 1)" from the command line, on assignment_client.hashing.

Usage:
    spec_hash.py check [VECTORS]   check every case of the golden vectors (default:
                                   spec/vectors/assignment-v1.json of the repository holding
                                   this file); prints one JSON line of counts per section, then
                                   "N passed, N failed"; exits 1 on any mismatch
    spec_hash.py evaluate          reads a JSON list of {"unit_id", "salt", "weights", "rollout"}
                                   on stdin, writes a JSON list of variant indexes (null: not
                                   enrolled by the rollout) with both buckets
    spec_hash.py hash STRING...    prints H of each string
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Tuple

from assignment_client.hashing import evaluate, hash_v1, rollout_bucket, segment, variant_bucket

Case = Dict[str, Any]


def default_vectors() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "spec", "vectors", "assignment-v1.json"))


def check(path: str) -> Tuple[Dict[str, Dict[str, int]], List[Dict[str, Any]]]:
    """Checks every case of the vector file; returns (per-section counts, mismatches)."""
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    checks: Dict[str, Callable[[Case], Tuple[Dict[str, Any], Dict[str, Any]]]] = {
        "hash": lambda c: ({"hash": hash_v1(c["input"])}, {"hash": c["hash"]}),
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
    counts: Dict[str, Dict[str, int]] = {}
    mismatches: List[Dict[str, Any]] = []
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


def main(argv: List[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "check"
    if mode == "check":
        path = argv[2] if len(argv) > 2 else default_vectors()
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
            print(hash_v1(s))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
