"""SPEC.md "Evaluating one unit for one experiment" (rules 2 to 11) and namespace parameter
merging, in pure Python, for recomputing an answer offline from an experiment's state.

``decide`` takes the state the server decides from: the experiment (status, salt, weights,
rollout, default and winner variant, its namespace and the holdouts covering it, and the outcome
of its targeting condition for the call's attributes) and the unit (whether its id is valid and
of the experiment's unit type, its override and its stored assignment). Rule 1 (an unknown
experiment) needs no state. Variants are indexes into the experiment's variant list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence

from .hashing import BUCKETS, hash_v1, rollout_bucket, segment, variant_index

#: Reasons, as SPEC.md names them (``assignment.v1.Reason`` without the ``REASON_`` prefix).
ENROLLED_REASONS = frozenset({"OVERRIDE", "STICKY", "NEW"})


@dataclass(frozen=True)
class Holdout:
    """A holdout covering the experiment: units whose holdout bucket is below ``share`` (basis
    points) are held out."""

    salt: str
    share: int


@dataclass(frozen=True)
class Namespace:
    """The experiment's namespace: its salt, segment count, and the segments the experiment holds."""

    salt: str
    segments: int
    owned: FrozenSet[int]


@dataclass(frozen=True)
class ExperimentState:
    status: str  # DRAFT, RUNNING, PAUSED or STOPPED
    salt: str
    weights: Sequence[int]
    rollout: int = BUCKETS
    default: int = 0
    winner: Optional[int] = None
    namespace: Optional[Namespace] = None
    holdouts: Sequence[Holdout] = field(default_factory=tuple)
    #: The targeting condition's outcome for the call's attributes; None: the experiment has none.
    condition: Optional[bool] = None


@dataclass(frozen=True)
class Outcome:
    reason: str
    #: Variant index, or None for no variant (an invalid unit, a unit type mismatch).
    variant: Optional[int]
    enrolled: bool
    #: The server stores this answer (outside a dry run): only NEW answers are stored anew.
    stored_now: bool


def holdout_bucket(unit_id: str, holdout_salt: str) -> int:
    """``H(unit_id + ":" + holdout_salt) mod 10000``."""
    return hash_v1(unit_id + ":" + holdout_salt) % BUCKETS


def _answer(reason: str, variant: Optional[int]) -> Outcome:
    return Outcome(reason, variant, reason in ENROLLED_REASONS, reason == "NEW")


def decide(
    experiment: ExperimentState,
    unit_id: str,
    *,
    valid: bool = True,
    type_matches: bool = True,
    override: Optional[int] = None,
    stored: Optional[int] = None,
) -> Outcome:
    """What the server answers ``unit_id`` for ``experiment``: the first rule that applies."""
    e = experiment
    if not valid:
        return _answer("INVALID_UNIT", None)
    if not type_matches:
        return _answer("UNIT_TYPE_MISMATCH", None)
    if override is not None:
        return _answer("OVERRIDE", override)
    if e.status == "DRAFT":
        return _answer("NOT_RUNNING", e.default)
    if e.status == "STOPPED":
        return _answer("WINNER", e.winner) if e.winner is not None else _answer("NOT_RUNNING", e.default)
    if stored is not None:
        return _answer("STICKY", stored)
    if e.status == "PAUSED":
        return _answer("PAUSED", e.default)
    if any(holdout_bucket(unit_id, h.salt) < h.share for h in e.holdouts):
        return _answer("HOLDOUT", e.default)
    if e.condition is False:
        return _answer("NOT_TARGETED", e.default)
    if e.namespace is not None and segment(unit_id, e.namespace.salt, e.namespace.segments) not in e.namespace.owned:
        return _answer("NOT_IN_NAMESPACE", e.default)
    if e.rollout < BUCKETS and rollout_bucket(unit_id, e.salt) >= e.rollout:
        return _answer("NOT_IN_ROLLOUT", e.default)
    return _answer("NEW", variant_index(unit_id, e.salt, e.weights))


def merge_params(defaults: Mapping[str, Any], variant_params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A namespace's default params with the unit's variant params laid over them key by key
    (a key the variant sets replaces the default's value whole)."""
    merged = dict(defaults)
    merged.update(variant_params or {})
    return merged
