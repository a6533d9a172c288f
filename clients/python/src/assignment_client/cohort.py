"""Assigning a cohort of any size through one ``StreamAssign`` call."""

from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from assignment.v1 import assignment_service_pb2, assignment_service_pb2_grpc, types_pb2

from .columns import ColumnAnswer, column_answers

#: Most ids in one StreamAssign message.
MAX_BATCH_IDS = 10_000
#: Most ids x experiments in one StreamAssign message.
MAX_BATCH_CELLS = 100_000
#: Most experiments in a stream's setup.
MAX_STREAM_EXPERIMENTS = 100
#: Default of ``max_in_flight``: batches sent and not yet answered.
DEFAULT_MAX_IN_FLIGHT = 8


def max_batch(experiments: int) -> int:
    """The largest batch a stream over ``experiments`` experiments takes: 10,000 ids, and at most
    100,000 ids x experiments."""
    return max(1, min(MAX_BATCH_IDS, MAX_BATCH_CELLS // max(1, experiments)))


@dataclass(frozen=True)
class CohortBatch:
    """The answers to one batch of a cohort."""

    #: 0 for the first batch, then 1, 2, ... (the stream answers batches in order).
    index: int
    #: The ids of the batch, in the order sent.
    unit_ids: List[str]
    #: Experiment key -> one answer per id of ``unit_ids``, in the same order; the keys in the
    #: order the stream was set up with.
    answers: Dict[str, List[ColumnAnswer]]
    #: The message as received (legend, legend params, explanations).
    response: assignment_service_pb2.StreamAssignResponse

    def rows(self) -> Iterator[Tuple[str, str, ColumnAnswer]]:
        """``(unit_id, experiment_key, answer)`` for every id, then every experiment."""
        columns = list(self.answers.items())
        for i, unit_id in enumerate(self.unit_ids):
            for key, answers in columns:
                yield unit_id, key, answers[i]


def stream_cohort(
    stub: assignment_service_pb2_grpc.AssignmentServiceStub,
    experiment_keys: Sequence[str],
    unit_ids: Iterable[str],
    *,
    unit_type: str = "",
    options: Optional[types_pb2.AssignOptions] = None,
    batch_size: Optional[int] = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    timeout: Optional[float] = None,
    metadata: Optional[Sequence[Tuple[str, str]]] = None,
    attributes: Optional[Mapping[str, Any]] = None,
) -> Iterator[CohortBatch]:
    """Assigns every id of ``unit_ids`` to every experiment of ``experiment_keys`` through one
    StreamAssign call, and returns a generator of the answered batches, in order.

    Ids are sent ``batch_size`` to a message (default and most: ``max_batch(len(experiment_keys))``,
    10,000 for up to 10 experiments). ``unit_ids`` may be any iterable of str, a generator
    included (``(line.strip() for line in open(path))`` for a file of ids); it is read on gRPC's
    sending thread, and never more than ``max_in_flight`` batches
    ahead of the answers this generator has handed out (default 8; 1 or more: the server
    answers each batch as soon as it is done): a caller that stops reading stops the input from being read
    and the server from assigning. (gRPC's own flow control alone would let the transport buffer
    a hundred batches and more, each assigned and stored.) Nothing is sent before the first
    ``next()``.

    Closing the generator early (``break``, ``close()``) cancels the call. A failed call raises
    ``grpc.RpcError``; an exception raised while reading ``unit_ids`` ends the stream and is
    raised here, after the batches sent before it. ``timeout`` (seconds) bounds the whole stream;
    default none. ``attributes`` (e.g. ``{"country": "US"}``) are every unit's attributes for the
    experiments' targeting conditions (the setup's ``attributes``).
    """
    if isinstance(experiment_keys, str):
        raise TypeError("experiment_keys: must be a sequence of keys, not one string")
    keys = list(experiment_keys)
    if not 1 <= len(keys) <= MAX_STREAM_EXPERIMENTS:
        raise ValueError("experiment_keys: must hold 1 to %d keys (got %d)" % (MAX_STREAM_EXPERIMENTS, len(keys)))
    seen = set()
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise TypeError("experiment_keys[%d]: must be a str, got %s" % (i, type(key).__name__))
        if key in seen:
            raise ValueError("experiment_keys[%d]: %r appears twice" % (i, key))
        seen.add(key)
    if isinstance(unit_ids, (str, bytes)):
        raise TypeError("unit_ids: must be an iterable of ids, not one string")
    largest = max_batch(len(keys))
    size = largest if batch_size is None else batch_size
    if not isinstance(size, int) or not 1 <= size <= largest:
        raise ValueError(
            "batch_size: must be 1 to %d for %d experiment(s) (10,000 ids and 100,000 ids x experiments a message), got %r"
            % (largest, len(keys), batch_size)
        )
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError("max_in_flight: must be 1 or more (batches sent and not yet answered), got %r" % (max_in_flight,))
    setup = assignment_service_pb2.StreamAssignSetup(experiment_keys=keys, unit_type=unit_type, options=options)
    if attributes is not None:
        if not isinstance(attributes, Mapping):
            raise TypeError("attributes: must be a mapping of names to values, got %s" % type(attributes).__name__)
        setup.attributes.update(attributes)
    return _stream(stub, keys, setup, unit_ids, size, max_in_flight, timeout, metadata)


def _stream(
    stub: assignment_service_pb2_grpc.AssignmentServiceStub,
    keys: List[str],
    setup: assignment_service_pb2.StreamAssignSetup,
    unit_ids: Iterable[str],
    size: int,
    max_in_flight: int,
    timeout: Optional[float],
    metadata: Optional[Sequence[Tuple[str, str]]],
) -> Iterator[CohortBatch]:
    # Batches sent and not answered yet, oldest first: appended on gRPC's sending thread (which
    # waits while max_in_flight are), taken here.
    sent: Deque[List[str]] = collections.deque()
    window = threading.Condition()
    ended = False
    failures: List[BaseException] = []

    def requests() -> Iterator[assignment_service_pb2.StreamAssignRequest]:
        first = True
        ids = iter(unit_ids)
        while True:
            with window:
                while len(sent) >= max_in_flight and not ended:
                    window.wait()
                if ended:
                    return
            try:
                batch = list(itertools.islice(ids, size))
                message = assignment_service_pb2.StreamAssignRequest(setup=setup if first else None, unit_ids=batch)
            except Exception as err:  # the caller's iterable failed, or an id is not a str
                # Ending the requests half-closes the stream: the batches sent are answered, then
                # the failure is raised to the caller (raising here would make gRPC log it and
                # cancel the call with UNKNOWN "Exception iterating requests!").
                failures.append(err)
                return
            if not batch and not first:
                return
            if batch:
                with window:
                    sent.append(batch)
            first = False
            yield message
            if len(batch) < size:
                return

    call = stub.StreamAssign(requests(), timeout=timeout, metadata=metadata)
    try:
        index = 0
        for response in call:
            if response.batch != index:
                raise RuntimeError("StreamAssign answered batch %d where batch %d was due" % (response.batch, index))
            with window:
                if not sent:
                    raise RuntimeError("StreamAssign answered batch %d, which was never sent" % index)
                batch = sent.popleft()
                window.notify()
            if len(response.columns) != len(keys):
                raise RuntimeError("StreamAssign answered batch %d with %d columns for %d experiments" % (index, len(response.columns), len(keys)))
            answers: Dict[str, List[ColumnAnswer]] = {}
            for key, column in zip(keys, response.columns):
                answers[key] = column_answers(column)
                if len(answers[key]) != len(batch):
                    raise RuntimeError("StreamAssign answered %d of the %d ids of batch %d" % (len(answers[key]), len(batch), index))
            yield CohortBatch(index, batch, answers, response)
            index += 1
        if failures:
            raise failures[0]
        if sent:
            raise RuntimeError("StreamAssign ended with %d batch(es) unanswered" % len(sent))
    finally:
        # Releases the sending thread and ends the call when the caller stopped early or something
        # failed (a no-op once the call is done).
        with window:
            ended = True
            window.notify_all()
        call.cancel()
