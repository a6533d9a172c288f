"""Typed params: the value when it has the asked type, else the caller's default."""

from __future__ import annotations

from google.protobuf import struct_pb2

from assignment.v1 import assignment_service_pb2 as pb
from assignment.v1 import types_pb2
from assignment_client import Params, params_by_namespace, params_column_answers


def test_typed_getters_from_a_struct() -> None:
    s = struct_pb2.Struct()
    s.update({"button_color": "green", "font_size": 16, "beta": True, "tags": ["a", "b"], "layout": {"columns": 3}})
    p = Params(s)
    assert p.get_string("button_color", "blue") == "green"
    assert p.get_number("font_size", 14) == 16
    assert p.get_bool("beta", False) is True
    assert p.get_list("tags") == ["a", "b"]
    assert p.get_object("layout").get_number("columns", 1) == 3
    assert len(p) == 5 and "beta" in p


def test_missing_or_mistyped_params_give_the_default() -> None:
    p = Params({"button_color": 7, "font_size": "16", "beta": 1, "tags": "a", "layout": [1]})
    assert p.get_string("button_color", "blue") == "blue"
    assert p.get_number("font_size", 14) == 14
    assert p.get_bool("beta", False) is False
    assert p.get_list("tags", ["x"]) == ["x"]
    assert p.get_object("layout", {"columns": 2}).get_number("columns", 1) == 2
    assert p.get_string("absent", "blue") == "blue"
    # a boolean is not a number
    assert Params({"n": True}).get_number("n", 3) == 3
    assert Params(None).as_dict() == {}


def struct(values: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def test_a_resolve_params_response_by_namespace() -> None:
    response = pb.ResolveParamsResponse(
        namespaces=[
            pb.ResolvedParams(
                namespace_key="checkout",
                params=struct({"button_color": "green", "font_size": 16}),
                experiment_key="buttons",
                variant_key="green",
                reason=types_pb2.REASON_NEW,
                enrolled=True,
                stored=True,
            ),
            pb.ResolvedParams(namespace_key="search", params=struct({"ranker": "bm25"})),
        ]
    )
    answers = params_by_namespace(response)
    assert sorted(answers) == ["checkout", "search"]
    c = answers["checkout"]
    assert c.params.get_string("button_color", "blue") == "green"
    assert c.params.get_number("font_size", 14) == 16
    assert (c.experiment_key, c.variant_key, c.reason, c.enrolled, c.stored) == ("buttons", "green", types_pb2.REASON_NEW, True, True)
    s = answers["search"]
    assert s.params.get_string("ranker", "x") == "bm25"
    assert (s.experiment_key, s.variant_key, s.reason, s.enrolled) == ("", "", types_pb2.REASON_UNSPECIFIED, False)
    assert s.params.get_bool("missing", True) is True


def test_a_params_column_unpacked_per_unit() -> None:
    column = pb.ParamsColumn(
        namespace_key="checkout",
        legend=[
            pb.ResolvedParamsChoice(params=struct({"button_color": "blue"})),
            pb.ResolvedParamsChoice(params=struct({"button_color": "green"}), experiment_key="buttons", variant_key="green"),
        ],
        legend_indexes=[1, 0, 1],
        reasons=[types_pb2.REASON_NEW, types_pb2.REASON_UNSPECIFIED, types_pb2.REASON_STICKY],
        enrolled=[True, False, True],
        stored=[True, False, True],
    )
    got = [(a.params.get_string("button_color", "?"), a.variant_key, a.reason, a.stored) for a in params_column_answers(column)]
    assert got == [
        ("green", "green", types_pb2.REASON_NEW, True),
        ("blue", "", types_pb2.REASON_UNSPECIFIED, False),
        ("green", "green", types_pb2.REASON_STICKY, True),
    ]
