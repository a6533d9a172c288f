"""``connect()``: one channel to the server, with retries, a token and typed stubs of both services."""

from __future__ import annotations

import collections
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import grpc

from assignment.v1 import assignment_service_pb2_grpc, experiment_service_pb2_grpc, types_pb2

from .cohort import DEFAULT_MAX_IN_FLIGHT, CohortBatch, stream_cohort
from .retry import DEFAULT_RETRY, RetryPolicy, channel_options

#: Largest message sent or received (the TypeScript client's limit too): a MatrixAssign answer of
#: 100,000 cells with explanations is several MB, past gRPC Python's default of 4 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Metadata = Sequence[Tuple[str, str]]


class Client:
    """Typed stubs of both services over one channel. Close it (or use ``with``) when done.

    ``assignments`` and ``experiments`` are the generated stubs: every method takes the request
    message and the usual gRPC keywords (``timeout=`` seconds, ``metadata=``, ``wait_for_ready=``)
    and raises ``grpc.RpcError`` (with ``.code()`` and ``.details()``) when the call fails.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.assignments = assignment_service_pb2_grpc.AssignmentServiceStub(channel)
        self.experiments = experiment_service_pb2_grpc.ExperimentServiceStub(channel)

    def stream_cohort(
        self,
        experiment_keys: Sequence[str],
        unit_ids: Iterable[str],
        *,
        unit_type: str = "",
        options: Optional[types_pb2.AssignOptions] = None,
        batch_size: Optional[int] = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: Optional[float] = None,
        metadata: Optional[Metadata] = None,
        attributes: Optional[Mapping[str, Any]] = None,
    ) -> Iterator[CohortBatch]:
        """``stream_cohort`` (see there) over this client's channel."""
        return stream_cohort(
            self.assignments,
            experiment_keys,
            unit_ids,
            unit_type=unit_type,
            options=options,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            timeout=timeout,
            metadata=metadata,
            attributes=attributes,
        )

    def close(self) -> None:
        """Closes the channel; calls still running are cancelled."""
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], traceback: Optional[TracebackType]
    ) -> None:
        self.close()


def connect(
    address: str,
    token: Optional[str] = None,
    *,
    credentials: Optional[grpc.ChannelCredentials] = None,
    retry: Optional[RetryPolicy] = DEFAULT_RETRY,
    timeout: Optional[float] = None,
    options: Sequence[Tuple[str, Any]] = (),
) -> Client:
    """A client of the server at ``address`` (``host:port``).

    - ``token``: sent as ``authorization: Bearer <token>`` on every call (ExperimentService needs
      the admin token; AssignmentService the assign token when the server sets one).
    - ``credentials``: TLS, e.g. ``grpc.ssl_channel_credentials(open("ca.pem", "rb").read())``;
      plaintext when absent.
    - ``retry``: how the idempotent methods are retried on UNAVAILABLE (see ``RetryPolicy``);
      None retries nothing.
    - ``timeout``: default deadline in seconds of every unary call that gives none (streams, in
      either direction, get none by default); None: no default deadline.
    - ``options``: more gRPC channel options; they win over the ones set here.
    """
    if not address:
        raise ValueError("address: must be host:port, got an empty string")
    if token is not None and token != "" and not _is_header_value(token):
        raise ValueError("token: must be printable ASCII without spaces at either end (it is sent as a header)")
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout: must be more than 0 seconds (or None for no default deadline), got %r" % (timeout,))
    channel_args: List[Tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *channel_options(retry),
    ]
    given = {name for name, _ in options}
    channel_args = [(name, value) for name, value in channel_args if name not in given] + list(options)
    if credentials is None:
        channel = grpc.insecure_channel(address, options=channel_args)
    else:
        channel = grpc.secure_channel(address, credentials, options=channel_args)
    metadata = [("authorization", "Bearer " + token)] if token else []
    if metadata or timeout is not None:
        channel = grpc.intercept_channel(channel, _CallDefaults(metadata, timeout))
    return Client(channel)


def _is_header_value(value: str) -> bool:
    return value == value.strip() and all(0x20 <= ord(c) < 0x7F for c in value)


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


_Result = TypeVar("_Result")


class _CallDefaults(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the client's metadata to every call (unless the call sets the same key itself) and its
    default deadline to unary calls (no stream) that have none."""

    def __init__(self, metadata: List[Tuple[str, str]], unary_timeout: Optional[float]) -> None:
        self._metadata = metadata
        self._unary_timeout = unary_timeout

    def _details(self, details: grpc.ClientCallDetails, default_timeout: Optional[float]) -> grpc.ClientCallDetails:
        own = list(details.metadata or [])
        keys = {key.lower() for key, _ in own}
        metadata = own + [(k, v) for k, v in self._metadata if k not in keys]
        timeout = details.timeout if details.timeout is not None else default_timeout
        return _CallDetails(
            details.method,
            timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., _Result], client_call_details: grpc.ClientCallDetails, request: Any) -> _Result:
        return continuation(self._details(client_call_details, self._unary_timeout), request)

    def intercept_unary_stream(self, continuation: Callable[..., _Result], client_call_details: grpc.ClientCallDetails, request: Any) -> _Result:
        return continuation(self._details(client_call_details, None), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., _Result], client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> _Result:
        return continuation(self._details(client_call_details, None), request_iterator)

    def intercept_stream_stream(
        self, continuation: Callable[..., _Result], client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> _Result:
        return continuation(self._details(client_call_details, None), request_iterator)
