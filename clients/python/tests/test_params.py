"""Typed params: the value when it has the asked type, else the caller's default."""

from __future__ import annotations

from google.protobuf import struct_pb2

from assignment_client import Params


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
