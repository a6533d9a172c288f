"""Retries of the idempotent methods, as a gRPC service config derived from the descriptors.

The protos mark what is safe to repeat: ``option idempotency_level = NO_SIDE_EFFECTS`` on the
reads and ``IDEMPOTENT`` on the sticky assignment calls. gRPC retries exactly those, on
UNAVAILABLE, with exponential backoff and jitter, within each call's deadline; never a method
that streams requests (a request stream cannot be replayed), nor any other. A server stream
(ExportAssignments) is retried only until its first message arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from google.protobuf import descriptor, descriptor_pb2

from assignment.v1 import assignment_service_pb2, cohort_service_pb2, experiment_service_pb2, job_service_pb2

#: The generated files whose services the client talks to (their descriptors are in the default
#: descriptor pool once imported).
FILES: Tuple[descriptor.FileDescriptor, ...] = (
    assignment_service_pb2.DESCRIPTOR,
    experiment_service_pb2.DESCRIPTOR,
    cohort_service_pb2.DESCRIPTOR,
    job_service_pb2.DESCRIPTOR,
)

_RETRYABLE_LEVELS = (descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT)
# gRPC caps maxAttempts at 5 (attempts in all, the first included).
_MAX_ATTEMPTS_CAP = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How gRPC retries the idempotent methods (the ``retryPolicy`` of a service config).

    The n-th retry waits a random time between 0 and
    ``min(initial_backoff * backoff_multiplier ** (n - 1), max_backoff)`` seconds.
    """

    #: Attempts in all, the first included: 2..5 (gRPC allows no more than 5).
    max_attempts: int = 4
    #: Seconds; upper bound of the first retry's random wait.
    initial_backoff: float = 0.05
    #: Seconds; upper bound of every wait.
    max_backoff: float = 2.0
    backoff_multiplier: float = 2.0
    #: Status code names that are retried.
    retryable_status_codes: Tuple[str, ...] = ("UNAVAILABLE",)

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= _MAX_ATTEMPTS_CAP:
            raise ValueError("max_attempts: must be 2..%d (attempts in all), got %r" % (_MAX_ATTEMPTS_CAP, self.max_attempts))
        if not self.initial_backoff > 0:
            raise ValueError("initial_backoff: must be more than 0 seconds, got %r" % (self.initial_backoff,))
        if not self.max_backoff >= self.initial_backoff:
            raise ValueError("max_backoff: must be at least initial_backoff (%r), got %r" % (self.initial_backoff, self.max_backoff))
        if not self.backoff_multiplier >= 1:
            raise ValueError("backoff_multiplier: must be at least 1, got %r" % (self.backoff_multiplier,))
        if not self.retryable_status_codes:
            raise ValueError("retryable_status_codes: must name at least one status code")

    def to_json(self) -> Dict[str, Any]:
        """The ``retryPolicy`` object of a gRPC service config."""
        return {
            "maxAttempts": self.max_attempts,
            "initialBackoff": _duration(self.initial_backoff),
            "maxBackoff": _duration(self.max_backoff),
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": list(self.retryable_status_codes),
        }


#: The default policy: 4 attempts, waits of at most 0.05 s, 0.1 s, 0.2 s (the TypeScript client's).
DEFAULT_RETRY = RetryPolicy()


def _duration(seconds: float) -> str:
    # Protobuf JSON Duration: decimal seconds with an "s", at most nanosecond precision.
    text = ("%.9f" % seconds).rstrip("0").rstrip(".")
    return text + "s"


def is_retryable(method: descriptor.MethodDescriptor) -> bool:
    """Whether gRPC may repeat ``method``: its proto declares it free of side effects or
    idempotent, and it does not stream requests."""
    return method.GetOptions().idempotency_level in _RETRYABLE_LEVELS and not method.client_streaming


def idempotent_methods(files: Iterable[descriptor.FileDescriptor] = FILES) -> List[Tuple[str, str]]:
    """``(service full name, method name)`` of every retryable method of ``files``, in
    declaration order."""
    return [
        (service.full_name, method.name)
        for file in files
        for service in file.services_by_name.values()
        for method in service.methods
        if is_retryable(method)
    ]


def retry_service_config(
    policy: RetryPolicy = DEFAULT_RETRY, files: Iterable[descriptor.FileDescriptor] = FILES
) -> Dict[str, Any]:
    """A gRPC service config retrying the idempotent methods of ``files`` under ``policy``
    (pass it to a channel as the ``grpc.service_config`` option, JSON-encoded)."""
    names = [{"service": service, "method": method} for service, method in idempotent_methods(files)]
    if not names:
        return {}
    return {"methodConfig": [{"name": names, "retryPolicy": policy.to_json()}]}


def channel_options(policy: Optional[RetryPolicy] = DEFAULT_RETRY) -> List[Tuple[str, Any]]:
    """gRPC channel options that retry the idempotent methods under ``policy`` (None: retry
    nothing)."""
    if policy is None:
        return [("grpc.enable_retries", 0)]
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(retry_service_config(policy))),
        # After a failed connection gRPC waits 1 s (growing) before connecting again and fails
        # calls at once meanwhile; reconnecting at the pace of the first retries lets them ride
        # out a server that is (re)starting.
        ("grpc.initial_reconnect_backoff_ms", max(1, int(policy.initial_backoff * 1000))),
    ]
