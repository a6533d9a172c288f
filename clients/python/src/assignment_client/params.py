"""Typed access to params (a variant's, or a namespace's merged ones): a value of the asked type,
or the caller's default when the key is missing or holds another type, so a page never breaks
because a param is absent or was mistyped in the experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from google.protobuf import json_format, struct_pb2

from assignment.v1 import assignment_service_pb2


class Params:
    """Params as a read-only mapping with typed getters::

        params = Params(answer.params)          # a google.protobuf.Struct, or a dict
        color = params.get_string("button_color", "blue")
        size = params.get_number("font_size", 14)
    """

    __slots__ = ("_values",)

    def __init__(self, params: Union[struct_pb2.Struct, Mapping[str, Any], None] = None) -> None:
        if params is None:
            values: Dict[str, Any] = {}
        elif isinstance(params, struct_pb2.Struct):
            values = json_format.MessageToDict(params)
        else:
            values = dict(params)
        self._values = values

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "Params(%r)" % (self._values,)

    def as_dict(self) -> Dict[str, Any]:
        """A copy of every param."""
        return dict(self._values)

    def get_string(self, key: str, default: str) -> str:
        v = self._values.get(key)
        return v if isinstance(v, str) else default

    def get_number(self, key: str, default: float) -> float:
        v = self._values.get(key)
        # bool is an int in Python: a true/false param is not a number.
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else default

    def get_bool(self, key: str, default: bool) -> bool:
        v = self._values.get(key)
        return v if isinstance(v, bool) else default

    def get_list(self, key: str, default: Optional[List[Any]] = None) -> List[Any]:
        v = self._values.get(key)
        return list(v) if isinstance(v, list) else list(default or [])

    def get_object(self, key: str, default: Optional[Mapping[str, Any]] = None) -> "Params":
        v = self._values.get(key)
        return Params(v if isinstance(v, dict) else (default or {}))


@dataclass(frozen=True)
class NamespaceParams:
    """One namespace's answer of ResolveParams (or one unit's of a BulkResolveParams column): the
    merged params, and the experiment, variant and reason behind them (experiment and variant are
    empty when no experiment holds the unit's segment)."""

    namespace_key: str
    params: Params
    experiment_key: str
    variant_key: str
    reason: int
    enrolled: bool
    stored: bool


def params_by_namespace(response: assignment_service_pb2.ResolveParamsResponse) -> Dict[str, NamespaceParams]:
    """A ResolveParams response's answers by namespace key::

        answers = params_by_namespace(client.assignments.ResolveParams(request))
        color = answers["checkout"].params.get_string("button_color", "blue")
    """
    return {
        a.namespace_key: NamespaceParams(
            a.namespace_key, Params(a.params), a.experiment_key, a.variant_key, a.reason, a.enrolled, a.stored
        )
        for a in response.namespaces
    }


def params_column_answers(column: assignment_service_pb2.ParamsColumn) -> List[NamespaceParams]:
    """A BulkResolveParams column unpacked into one answer per requested unit, in order."""
    legend = [Params(c.params) for c in column.legend]
    return [
        NamespaceParams(
            column.namespace_key,
            legend[index],
            column.legend[index].experiment_key,
            column.legend[index].variant_key,
            column.reasons[i],
            column.enrolled[i],
            column.stored[i],
        )
        for i, index in enumerate(column.legend_indexes)
    ]
