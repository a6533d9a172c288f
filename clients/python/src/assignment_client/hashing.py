"""SPEC.md "Hashing (hash version 1)" in pure Python, for recomputing answers offline.

``hash_v1(s)`` is MurmurHash3 x86 32-bit of the UTF-8 bytes of ``s``, seed 0, unsigned (the same
as ``mmh3.hash(s, signed=False)``), written here from the algorithm so that no extra package is
needed. On top of it, the SPEC formulas::

    variant bucket  = H(unit_id + ":" + salt) mod 10000
    rollout bucket  = H(unit_id + ":" + salt + ":rollout") mod 10000
    segment         = H(unit_id + ":" + namespace_salt) mod segments
    variant         = the first variant i with bucket < weight_0 + ... + weight_i
    enrolled        = rollout bucket < rollout

``evaluate`` is the hashed answer of a running experiment outside namespaces for a unit with
nothing stored and no override (rules 10 and 11 of SPEC.md); what the server answers for a unit
it already stored is the stored variant, whatever the weights say now.
"""

from __future__ import annotations

from typing import Optional, Sequence

from assignment.v1 import types_pb2

#: Buckets of the variant and rollout hashes (weights and rollout are basis points of this).
BUCKETS = 10_000
#: The hash version this module implements (``Experiment.hash_version``).
HASH_VERSION = 1

_MASK = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data``, as an unsigned 32-bit integer."""
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
    if tail:
        k = 0
        if len(tail) >= 3:
            k ^= tail[2] << 16
        if len(tail) >= 2:
            k ^= tail[1] << 8
        k ^= tail[0]
        k = (k * _C1) & _MASK
        k = _rotl32(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
    # Finalization: every input bit avalanches.
    h ^= length & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def hash_v1(s: str) -> int:
    """SPEC's H: MurmurHash3 x86 32 of the UTF-8 bytes of ``s``, seed 0, unsigned."""
    return murmur3_x86_32(s.encode("utf-8"), 0)


def variant_bucket(unit_id: str, salt: str) -> int:
    """``H(unit_id + ":" + salt) mod 10000``."""
    return hash_v1(unit_id + ":" + salt) % BUCKETS


def rollout_bucket(unit_id: str, salt: str) -> int:
    """``H(unit_id + ":" + salt + ":rollout") mod 10000``."""
    return hash_v1(unit_id + ":" + salt + ":rollout") % BUCKETS


def segment(unit_id: str, namespace_salt: str, segments: int) -> int:
    """The unit's segment in a namespace of ``segments`` segments."""
    if segments < 1:
        raise ValueError("segments: must be at least 1, got %d" % segments)
    return hash_v1(unit_id + ":" + namespace_salt) % segments


def variant_index(unit_id: str, salt: str, weights: Sequence[int]) -> int:
    """Index of the first variant whose cumulative weight exceeds the unit's variant bucket."""
    bucket = variant_bucket(unit_id, salt)
    cumulative = 0
    for i, weight in enumerate(weights):
        cumulative += weight
        if bucket < cumulative:
            return i
    raise ValueError("weights: must sum to %d basis points, they sum to %d" % (BUCKETS, cumulative))


def evaluate(unit_id: str, salt: str, weights: Sequence[int], rollout: int = BUCKETS) -> Optional[int]:
    """The hashed variant index of a unit, or None when the rollout leaves it out."""
    if rollout_bucket(unit_id, salt) >= rollout:
        return None
    return variant_index(unit_id, salt, weights)


def hashed_variant(experiment: types_pb2.Experiment, unit_id: str) -> Optional[str]:
    """The variant key hashing gives ``unit_id`` in ``experiment`` (as GetExperiment returns it),
    or None when its rollout leaves the unit out (the server then answers the default variant,
    NOT_IN_ROLLOUT)."""
    if experiment.hash_version not in (0, HASH_VERSION):
        raise ValueError("experiment %r: hash version %d is not %d" % (experiment.key, experiment.hash_version, HASH_VERSION))
    index = evaluate(unit_id, experiment.salt, [v.weight for v in experiment.variants], experiment.rollout)
    return None if index is None else experiment.variants[index].key
