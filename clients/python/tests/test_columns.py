"""Decoding packed AssignmentColumns into one answer per unit."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from assignment.v1 import types_pb2
from assignment_client import ColumnAnswer, column_answers

R = types_pb2


def test_one_answer_per_unit_in_order() -> None:
    column = types_pb2.AssignmentColumn(
        experiment_key="e",
        legend=["", "control", "green"],
        variant_indexes=[2, 1, 0, 1],
        reasons=[R.REASON_NEW, R.REASON_STICKY, R.REASON_INVALID_UNIT, R.REASON_NOT_IN_ROLLOUT],
        enrolled=[True, True, False, False],
        stored=[True, True, False, False],
    )
    assert column_answers(column) == [
        ColumnAnswer("green", R.REASON_NEW, True, True),
        ColumnAnswer("control", R.REASON_STICKY, True, True),
        ColumnAnswer("", R.REASON_INVALID_UNIT, False, False),
        ColumnAnswer("control", R.REASON_NOT_IN_ROLLOUT, False, False),
    ]
    assert [a.reason_name for a in column_answers(column)] == [
        "REASON_NEW",
        "REASON_STICKY",
        "REASON_INVALID_UNIT",
        "REASON_NOT_IN_ROLLOUT",
    ]


def test_an_empty_column_has_no_answers() -> None:
    assert column_answers(types_pb2.AssignmentColumn(experiment_key="e", legend=[""])) == []


def test_params_and_explanations_when_asked_for() -> None:
    green = struct_pb2.Struct()
    green.update({"color": "#0a0", "size": 2})
    column = types_pb2.AssignmentColumn(
        experiment_key="e",
        legend=["", "control", "green"],
        legend_params=[struct_pb2.Struct(), struct_pb2.Struct(), green],
        variant_indexes=[2, 1],
        reasons=[R.REASON_NEW, R.REASON_NEW],
        enrolled=[True, True],
        stored=[False, False],
        explanations=[
            types_pb2.Explanation(variant_bucket=7000, rollout_bucket=12, layer=types_pb2.LAYER_COMPUTED),
            types_pb2.Explanation(variant_bucket=10, rollout_bucket=99, layer=types_pb2.LAYER_MEMORY),
        ],
    )
    first, second = column_answers(column)
    assert first.params == {"color": "#0a0", "size": 2}
    assert second.params == {}
    assert first.explanation is not None and first.explanation.variant_bucket == 7000
    assert second.explanation is not None and second.explanation.layer == types_pb2.LAYER_MEMORY


def test_a_malformed_column_is_refused() -> None:
    short = types_pb2.AssignmentColumn(
        experiment_key="e", legend=["", "a"], variant_indexes=[1, 1], reasons=[R.REASON_NEW], enrolled=[True, True], stored=[True, True]
    )
    with pytest.raises(ValueError, match="column 'e': reasons has 1 entries, variant_indexes 2"):
        column_answers(short)
    past = types_pb2.AssignmentColumn(
        experiment_key="e", legend=["", "a"], variant_indexes=[0, 2], reasons=[R.REASON_NEW] * 2, enrolled=[True] * 2, stored=[True] * 2
    )
    with pytest.raises(ValueError, match=r"variant_indexes\[1\] is 2, past the legend's 2 entries"):
        column_answers(past)
