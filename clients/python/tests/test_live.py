"""Against a running server (ASSIGNMENT_ADDRESS): experiments, Assign, BulkAssign and a cohort
through StreamAssign, compared with each other and with SPEC.md recomputed offline; the token;
the cohort helper's flow control; retries of a server that is not listening yet."""

from __future__ import annotations

import itertools
import os
import socket
import threading
from typing import Dict, Iterator, List, Optional, Tuple

import grpc
import pytest
from google.protobuf import struct_pb2

from assignment.v1 import assignment_service_pb2 as pb
from assignment.v1 import experiment_service_pb2 as admin
from assignment.v1 import types_pb2
from assignment_client import (
    Client,
    ColumnAnswer,
    RetryPolicy,
    column_answers,
    connect,
    hashed_variant,
    merge_params,
    params_by_namespace,
    params_column_answers,
)

pytestmark = pytest.mark.live

R = types_pb2


def create(client: Client, key: str, salt: str, weights: Dict[str, int], rollout: int) -> types_pb2.Experiment:
    response = client.experiments.CreateExperiment(
        admin.CreateExperimentRequest(
            key=key,
            salt=salt,
            variants=[types_pb2.Variant(key=k, weight=w) for k, w in weights.items()],
            rollout=rollout,
            status=types_pb2.EXPERIMENT_STATUS_RUNNING,
        )
    )
    # What the server stored is what the offline recomputation uses.
    stored: types_pb2.Experiment = client.experiments.GetExperiment(admin.GetExperimentRequest(key=key)).experiment
    assert stored == response.experiment
    return stored


def expected(experiment: types_pb2.Experiment, unit_id: str, first: bool) -> Tuple[str, int, bool, bool]:
    """(variant, reason, enrolled, stored) SPEC.md gives a unit with no override, from the hash."""
    variant = hashed_variant(experiment, unit_id)
    if variant is None:
        default = experiment.default_variant or experiment.variants[0].key
        return default, R.REASON_NOT_IN_ROLLOUT, False, False
    return variant, R.REASON_NEW if first else R.REASON_STICKY, True, True


def as_tuple(a: ColumnAnswer) -> Tuple[str, int, bool, bool]:
    return a.variant_key, a.reason, a.enrolled, a.stored


def test_assign_is_the_hashed_variant_then_sticky(client: Client, unique: str) -> None:
    e = create(client, "py-assign-" + unique, "py-assign-sält-" + unique, {"control": 2000, "t1": 3000, "t2": 5000}, 6000)
    units = ["u-%d" % i for i in range(40)] + ["Größe-ü", "🙂-emoji", " spaced id "]
    outcomes = set()
    for first in (True, False):
        for unit in units:
            a = client.assignments.Assign(pb.AssignRequest(experiment_key=e.key, unit_id=unit)).assignment
            assert (a.variant_key, a.reason, a.enrolled, a.stored) == expected(e, unit, first), unit
            assert a.experiment_key == e.key
            outcomes.add(a.reason)
    assert {R.REASON_NEW, R.REASON_STICKY, R.REASON_NOT_IN_ROLLOUT} <= outcomes


def test_a_cohort_streams_in_order_and_agrees_with_bulk_and_the_hash(client: Client, unique: str) -> None:
    ab = create(client, "py-cohort-ab-" + unique, "py-cohort-ab-" + unique, {"a": 5000, "b": 5000}, 10_000)
    abc = create(client, "py-cohort-abc-" + unique, "py-cohort-abc-🧂-" + unique, {"control": 2000, "t1": 3000, "t2": 5000}, 7000)
    missing = "py-cohort-missing-" + unique
    keys = [ab.key, abc.key, missing]
    units = ["c-%s-%d" % (unique, i) for i in range(4000)] + ["ü-%d" % i for i in range(300)] + ["中文-%d" % i for i in range(200)]

    # The cohort first: every unit is new.
    batches = list(client.stream_cohort(keys, iter(units), batch_size=700))
    assert [b.index for b in batches] == list(range(len(batches))) and len(batches) == 7
    assert [len(b.unit_ids) for b in batches] == [700] * 6 + [300]
    assert list(itertools.chain.from_iterable(b.unit_ids for b in batches)) == units
    streamed: Dict[str, List[ColumnAnswer]] = {k: [] for k in keys}
    for b in batches:
        assert list(b.answers) == keys
        for k in keys:
            streamed[k].extend(b.answers[k])
    rows = list(batches[0].rows())
    assert rows[:3] == [(units[0], k, batches[0].answers[k][0]) for k in keys]

    for e in (ab, abc):
        assert [as_tuple(a) for a in streamed[e.key]] == [expected(e, u, True) for u in units], e.key
    assert {as_tuple(a) for a in streamed[missing]} == {("", R.REASON_UNKNOWN_EXPERIMENT, False, False)}
    enrolled = sum(a.enrolled for a in streamed[abc.key])
    assert 0.6 * len(units) < enrolled < 0.8 * len(units)  # rollout 70 %: both outcomes, plenty of each

    # BulkAssign of the same units afterwards: the same variants, now stored (STICKY).
    for e in (ab, abc):
        bulk = column_answers(client.assignments.BulkAssign(pb.BulkAssignRequest(experiment_key=e.key, unit_ids=units)).column)
        assert [as_tuple(a) for a in bulk] == [expected(e, u, False) for u in units], e.key
        assert [a.variant_key for a in bulk] == [a.variant_key for a in streamed[e.key]]

    # And streaming them again answers what BulkAssign did.
    again = list(client.stream_cohort([abc.key], units))
    assert len(again) == 1 and again[0].unit_ids == units
    assert [as_tuple(a) for a in again[0].answers[abc.key]] == [expected(abc, u, False) for u in units]


def test_a_cohort_with_attributes_meets_the_targeting_condition(client: Client, unique: str) -> None:
    key = "py-targeted-" + unique
    client.experiments.CreateExperiment(
        admin.CreateExperimentRequest(
            key=key,
            variants=[types_pb2.Variant(key="a", weight=5000), types_pb2.Variant(key="b", weight=5000)],
            default_variant="b",
            status=types_pb2.EXPERIMENT_STATUS_RUNNING,
            condition='attributes.country == "US" && attributes.version >= 5',
        )
    )
    units = ["t-%s-%d" % (unique, i) for i in range(50)]
    miss = list(client.stream_cohort([key], units, attributes={"country": "FR", "version": 6}))
    assert {(a.variant_key, a.reason, a.stored) for a in miss[0].answers[key]} == {("b", R.REASON_NOT_TARGETED, False)}
    hit = list(client.stream_cohort([key], units, attributes={"country": "US", "version": 5.5}))
    assert {a.reason for a in hit[0].answers[key]} == {R.REASON_NEW}
    with pytest.raises(grpc.RpcError) as bad:
        list(client.stream_cohort([key], units, attributes={"geo": {"country": "US"}}))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "setup.attributes.geo" in (bad.value.details() or "")


def test_a_namespace_answers_its_defaults_under_the_variant_params(client: Client, unique: str) -> None:
    ns, key = "py-ns-" + unique, "py-ns-e-" + unique
    defaults = {"button_color": "blue", "font_size": 14}
    variant_params = {"plain": {}, "green": {"button_color": "green"}}
    created = client.experiments.CreateNamespace(admin.CreateNamespaceRequest(key=ns, segments=10, default_params=_struct(defaults)))
    assert dict(created.namespace.default_params) == defaults
    client.experiments.CreateExperiment(
        admin.CreateExperimentRequest(
            key=key,
            variants=[types_pb2.Variant(key=k, weight=5000, params=_struct(p)) for k, p in variant_params.items()],
            status=types_pb2.EXPERIMENT_STATUS_RUNNING,
        )
    )
    client.experiments.AllocateSegments(admin.AllocateSegmentsRequest(namespace_key=ns, experiment_key=key, segments=10))
    experiment = client.experiments.GetExperiment(admin.GetExperimentRequest(key=key)).experiment
    units = ["py-ns-u-%d" % i for i in range(40)]
    for first in (True, False):
        for unit in units:
            answers = params_by_namespace(client.assignments.ResolveParams(pb.ResolveParamsRequest(units={"user_id": unit}, namespace_keys=[ns])))
            a = answers[ns]
            variant = hashed_variant(experiment, unit)
            assert variant is not None
            assert (a.experiment_key, a.variant_key, a.reason) == (key, variant, R.REASON_NEW if first else R.REASON_STICKY)
            assert a.params.as_dict() == merge_params(defaults, variant_params[variant])
            assert a.params.get_string("button_color", "none") == ("green" if variant == "green" else "blue")
    column = client.assignments.BulkResolveParams(pb.BulkResolveParamsRequest(unit_ids=units, namespace_keys=[ns])).columns[0]
    for unit, a in zip(units, params_column_answers(column)):
        assert (a.variant_key, a.reason) == (hashed_variant(experiment, unit), R.REASON_STICKY)
        assert a.params.get_number("font_size", 0) == 14


def _struct(values: Dict[str, object]) -> "struct_pb2.Struct":
    s = struct_pb2.Struct()
    s.update(values)
    return s


def test_an_empty_cohort_has_no_batches(client: Client, unique: str) -> None:
    e = create(client, "py-empty-" + unique, "py-empty-" + unique, {"a": 5000, "b": 5000}, 10_000)
    assert list(client.stream_cohort([e.key], [])) == []


def test_a_cohort_reads_its_input_only_as_answers_are_taken(client: Client, unique: str) -> None:
    e = create(client, "py-flow-" + unique, "py-flow-" + unique, {"a": 5000, "b": 5000}, 10_000)
    pulled = [0]
    total = 1_000_000

    def ids() -> Iterator[str]:
        for i in range(total):
            pulled[0] += 1
            yield "f-%d" % i

    size, window = 1000, 8
    options = types_pb2.AssignOptions(dry_run=True)
    stream = client.stream_cohort([e.key], ids(), batch_size=size, max_in_flight=window, options=options)
    taken = 0
    for batch in stream:
        taken += 1
        assert len(batch.unit_ids) == size
        # Give the sending thread every chance to run ahead; it must not pass the window.
        threading.Event().wait(0.3)
        assert pulled[0] <= (taken + window) * size
        if taken == 3:
            break
    assert pulled[0] < total
    # Dry run: nothing was stored.
    column = client.assignments.BulkAssign(pb.BulkAssignRequest(experiment_key=e.key, unit_ids=["f-0", "f-1"])).column
    assert [a.reason for a in column_answers(column)] == [R.REASON_NEW, R.REASON_NEW]
    assert [a.stored for a in column_answers(column)] == [True, True]


def test_one_batch_in_flight_is_answered_batch_by_batch(client: Client, unique: str) -> None:
    # The server answers a finished batch while it waits for the next one, so a window of one
    # batch (send, wait for its answer, send the next) streams the whole cohort.
    e = create(client, "py-one-" + unique, "py-one-" + unique, {"a": 5000, "b": 5000}, 10_000)
    units = ["one-%d" % i for i in range(500)]
    batches = list(client.stream_cohort([e.key], units, batch_size=100, max_in_flight=1, timeout=60))
    assert [b.index for b in batches] == [0, 1, 2, 3, 4]
    assert [u for b in batches for u in b.unit_ids] == units
    assert [as_tuple(a) for b in batches for a in b.answers[e.key]] == [expected(e, u, True) for u in units]


def test_a_failing_input_is_raised_after_the_batches_before_it(client: Client, unique: str) -> None:
    e = create(client, "py-fail-" + unique, "py-fail-" + unique, {"a": 5000, "b": 5000}, 10_000)

    def ids() -> Iterator[str]:
        for i in range(2500):
            yield "x-%d" % i
        raise LookupError("the id source broke")

    got: List[int] = []
    with pytest.raises(LookupError, match="the id source broke"):
        for batch in client.stream_cohort([e.key], ids(), batch_size=1000):
            got.append(batch.index)
    assert got == [0, 1]


def test_the_token_is_sent(address: str, token: Optional[str], unique: str) -> None:
    if token is None:
        pytest.skip("the server demands no token (ASSIGNMENT_TOKEN is not set)")
    request = admin.ListExperimentsRequest()
    with connect(address, timeout=30) as anonymous:
        with pytest.raises(grpc.RpcError) as failed:
            anonymous.experiments.ListExperiments(request)
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with connect(address, token, timeout=30) as c:
        c.experiments.ListExperiments(request)
        # A call's own authorization wins over the client's.
        with pytest.raises(grpc.RpcError) as failed:
            c.experiments.ListExperiments(request, metadata=[("authorization", "Bearer wrong-" + unique)])
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


class Proxy:
    """A TCP forwarder from a local port to the server: the server "starts listening" there."""

    def __init__(self, port: int, upstream: str) -> None:
        host, _, upstream_port = upstream.rpartition(":")
        self.upstream = (host.strip("[]") or "127.0.0.1", int(upstream_port))
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_once(client: Client) -> threading.Event:
    """Set once the channel failed to connect (nothing listens at its address)."""
    failed = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            failed.set()

    client.channel.subscribe(watch)
    return failed


def test_idempotent_calls_made_before_the_server_listens_succeed_once_it_does(address: str, token: Optional[str], unique: str) -> None:
    with connect(address, token, timeout=30) as c:
        e = create(c, "py-retry-" + unique, "py-retry-" + unique, {"a": 5000, "b": 5000}, 10_000)
    port = free_port()
    # Retries wait up to 1 s, 2 s, 4 s, 4 s; the channel reconnects after 0.1 s (then 0.16 s, ...),
    # so the attempts after the first outlast the moment the "server" starts listening.
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=4.0)
    options = [("grpc.initial_reconnect_backoff_ms", 100)]

    with connect("127.0.0.1:%d" % port, token, retry=None) as plain:
        with pytest.raises(grpc.RpcError) as failed:
            plain.assignments.Assign(pb.AssignRequest(experiment_key=e.key, unit_id="r-1"), timeout=30)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE

    with connect("127.0.0.1:%d" % port, token, retry=policy, options=options) as c:
        refused = refused_once(c)
        assign = c.assignments.Assign.future(pb.AssignRequest(experiment_key=e.key, unit_id="r-1"), timeout=60)
        bulk = c.assignments.BulkAssign.future(pb.BulkAssignRequest(experiment_key=e.key, unit_ids=["r-1", "r-2"]), timeout=60)
        # Not idempotent, so not retried: it fails as the connection is refused.
        create_call = c.experiments.CreateExperiment.future(
            admin.CreateExperimentRequest(key="py-never-" + unique, variants=[types_pb2.Variant(key="a", weight=10_000)]), timeout=60
        )
        assert refused.wait(30), "the channel never tried to connect"
        with pytest.raises(grpc.RpcError) as failed:
            create_call.result()
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        proxy = Proxy(port, address)
        try:
            a = assign.result().assignment
            column = column_answers(bulk.result().column)
        finally:
            proxy.close()
    assert (a.variant_key, a.enrolled) == (hashed_variant(e, "r-1"), True)
    assert [x.variant_key for x in column] == [hashed_variant(e, "r-1"), hashed_variant(e, "r-2")]
    with connect(address, token, timeout=30) as c, pytest.raises(grpc.RpcError) as missing:
        c.experiments.GetExperiment(admin.GetExperimentRequest(key="py-never-" + unique))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_tls_with_a_token(token: Optional[str], unique: str) -> None:
    """Against a server speaking TLS (ASSIGNMENT_TLS_ADDRESS, trusting ASSIGNMENT_CA_FILE)."""
    tls_address, ca_file = os.environ.get("ASSIGNMENT_TLS_ADDRESS"), os.environ.get("ASSIGNMENT_CA_FILE")
    if not tls_address or not ca_file:
        pytest.skip("ASSIGNMENT_TLS_ADDRESS and ASSIGNMENT_CA_FILE are not set: no TLS server to test against")
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(f.read())
    with connect(tls_address, token, credentials=credentials, timeout=30) as c:
        e = create(c, "py-tls-" + unique, "py-tls-" + unique, {"a": 5000, "b": 5000}, 10_000)
        a = c.assignments.Assign(pb.AssignRequest(experiment_key=e.key, unit_id="t-1")).assignment
        assert (a.variant_key, a.reason) == (hashed_variant(e, "t-1"), R.REASON_NEW)
    with connect(tls_address, token, retry=None, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as failed:
        plaintext.experiments.ListExperiments(admin.ListExperimentsRequest())
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
