"""Decoding packed ``AssignmentColumn``s (BulkAssign, MatrixAssign, StreamAssign) into one answer
per unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from google.protobuf import json_format

from assignment.v1 import types_pb2


@dataclass(frozen=True)
class ColumnAnswer:
    """One unit's answer for one experiment, unpacked from a column."""

    #: The variant; "" when there is none (unknown experiment, invalid unit, unit type mismatch).
    variant_key: str
    #: Why (``assignment.v1.types_pb2.Reason``, e.g. ``REASON_NEW``); see ``reason_name``.
    reason: types_pb2.Reason
    #: True for OVERRIDE, STICKY and NEW.
    enrolled: bool
    #: True when the answer is (now) a stored assignment.
    stored: bool
    #: The variant's params, only when the call asked for them (``include_params``).
    params: Optional[Dict[str, Any]] = None
    #: Buckets, segment and answering layer, only when the call asked for them (``explain``).
    explanation: Optional[types_pb2.Explanation] = None

    @property
    def reason_name(self) -> str:
        """The reason's name, e.g. ``REASON_STICKY``."""
        return str(types_pb2.Reason.Name(self.reason))


def column_answers(column: types_pb2.AssignmentColumn) -> List[ColumnAnswer]:
    """Unpacks ``column`` into one answer per requested unit, in request order.

    Element i of ``variant_indexes``, ``reasons``, ``enrolled`` and ``stored`` answers unit i of
    the request; ``variant_indexes`` point into ``legend`` (entry 0 is "", no variant).
    """
    n = len(column.variant_indexes)
    for name in ("reasons", "enrolled", "stored"):
        if len(getattr(column, name)) != n:
            raise ValueError(
                "column %r: %s has %d entries, variant_indexes %d" % (column.experiment_key, name, len(getattr(column, name)), n)
            )
    if column.explanations and len(column.explanations) != n:
        raise ValueError("column %r: explanations has %d entries, variant_indexes %d" % (column.experiment_key, len(column.explanations), n))
    legend = list(column.legend)
    for i, v in enumerate(column.variant_indexes):
        if v >= len(legend):
            raise ValueError("column %r: variant_indexes[%d] is %d, past the legend's %d entries" % (column.experiment_key, i, v, len(legend)))
    params: List[Optional[Dict[str, Any]]] = [None] * len(legend)
    for i, p in enumerate(column.legend_params):
        if i < len(params):
            params[i] = json_format.MessageToDict(p)
    explanations = list(column.explanations) if column.explanations else [None] * n
    return [
        ColumnAnswer(legend[v], r, e, s, params[v], x)
        for v, r, e, s, x in zip(column.variant_indexes, column.reasons, column.enrolled, column.stored, explanations)
    ]
