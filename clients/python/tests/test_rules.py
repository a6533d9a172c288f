"""spec/vectors/rules-v1.json (an independent reference's cases of the whole rule order and of
namespace parameter merging), every case through ``rules.decide`` and ``rules.merge_params``."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict

import pytest

from assignment_client.rules import ExperimentState, Holdout, Namespace, decide, merge_params


@pytest.fixture(scope="module")
def vectors(vectors_path: pathlib.Path) -> Dict[str, Any]:
    with open(vectors_path.parent / "rules-v1.json", encoding="utf-8") as f:
        return json.load(f)


def state(e: Dict[str, Any]) -> ExperimentState:
    ns = e["namespace"]
    return ExperimentState(
        status=e["status"],
        salt=e["salt"],
        weights=e["weights"],
        rollout=e["rollout"],
        default=e["default"],
        winner=e["winner"],
        namespace=None if ns is None else Namespace(ns["salt"], ns["segments"], frozenset(ns["owned"])),
        holdouts=tuple(Holdout(h["salt"], h["share"]) for h in e["holdouts"]),
        condition=e["condition"],
    )


def test_every_rule_case(vectors: Dict[str, Any]) -> None:
    assert vectors["spec_version"] == 1 and len(vectors["rules"]) > 0
    failures = []
    for i, c in enumerate(vectors["rules"]):
        u = c["unit"]
        got = decide(
            state(c["experiment"]),
            u["unit_id"],
            valid=u["valid"],
            type_matches=u["type_matches"],
            override=u["override"],
            stored=u["stored"],
        )
        want = c["expect"]
        if (got.reason, got.variant, got.enrolled, got.stored_now) != (want["reason"], want["variant"], want["enrolled"], want["stored_now"]):
            failures.append("case %d: got %r, want %r" % (i, got, want))
    assert failures == []


def test_every_params_case(vectors: Dict[str, Any]) -> None:
    assert len(vectors["params"]) > 0
    for i, c in enumerate(vectors["params"]):
        assert merge_params(c["defaults"], c["variant_params"]) == c["merged"], "case %d" % i
