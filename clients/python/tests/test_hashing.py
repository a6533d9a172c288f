"""SPEC.md's hash version 1, held to every case of the golden vectors (spec/vectors)."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List

import pytest

from assignment.v1 import types_pb2
from assignment_client import hashing
from assignment_client.rules import holdout_bucket

SECTIONS = ("hash", "buckets", "segments", "evaluate")


@pytest.fixture(scope="module")
def vectors(vectors_path: pathlib.Path) -> Dict[str, List[Dict[str, Any]]]:
    with open(vectors_path, encoding="utf-8") as f:
        data: Dict[str, List[Dict[str, Any]]] = json.load(f)
    for section in SECTIONS:
        assert data.get(section), "the vector file has no %r cases" % section
    return data


def test_hash(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    wrong = [c for c in vectors["hash"] if hashing.hash_v1(c["input"]) != c["hash"]]
    assert wrong == []


def test_buckets(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    wrong = [
        c
        for c in vectors["buckets"]
        if (hashing.variant_bucket(c["unit_id"], c["salt"]), hashing.rollout_bucket(c["unit_id"], c["salt"]))
        != (c["variant_bucket"], c["rollout_bucket"])
    ]
    assert wrong == []


def test_holdout_buckets(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    """SPEC.md: the holdout bucket is the buckets section's variant bucket under the holdout's salt."""
    assert len(vectors["buckets"]) > 0
    wrong = [c for c in vectors["buckets"] if holdout_bucket(c["unit_id"], c["salt"]) != c["variant_bucket"]]
    assert wrong == []


def test_segments(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    wrong = [c for c in vectors["segments"] if hashing.segment(c["unit_id"], c["namespace_salt"], c["segments"]) != c["segment"]]
    assert wrong == []


def test_evaluate(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    cases = vectors["evaluate"]
    wrong = [c for c in cases if hashing.evaluate(c["unit_id"], c["salt"], c["weights"], c["rollout"]) != c["variant"]]
    assert wrong == []
    # The cases cover both outcomes: enrolled units and units the rollout leaves out.
    assert any(c["variant"] is None for c in cases) and any(c["variant"] is not None for c in cases)


def test_hashed_variant_reads_an_experiment(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    for c in vectors["evaluate"]:
        experiment = types_pb2.Experiment(
            key="k",
            salt=c["salt"],
            hash_version=1,
            rollout=c["rollout"],
            variants=[types_pb2.Variant(key="v%d" % i, weight=w) for i, w in enumerate(c["weights"])],
        )
        want = None if c["variant"] is None else "v%d" % c["variant"]
        assert hashing.hashed_variant(experiment, c["unit_id"]) == want, c


def test_the_vectors_catch_a_wrong_hash(vectors: Dict[str, List[Dict[str, Any]]]) -> None:
    # Near misses of SPEC's H (another seed, another encoding) fail most hash cases.
    seeded = [c for c in vectors["hash"] if hashing.murmur3_x86_32(c["input"].encode("utf-8"), 1) != c["hash"]]
    utf16 = [c for c in vectors["hash"] if c["input"] and hashing.murmur3_x86_32(c["input"].encode("utf-16-le")) != c["hash"]]
    assert len(seeded) > len(vectors["hash"]) // 2
    assert len(utf16) > len(vectors["hash"]) // 2


def test_bad_input_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="weights: must sum to 10000"):
        hashing.variant_index("u", "s", [10, 20])
    with pytest.raises(ValueError, match="segments: must be at least 1"):
        hashing.segment("u", "s", 0)
    with pytest.raises(ValueError, match="hash version 2"):
        hashing.hashed_variant(types_pb2.Experiment(key="k", salt="s", hash_version=2), "u")
