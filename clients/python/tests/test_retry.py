"""The retry service config names exactly the methods the protos declare idempotent."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Dict, List, Set, Tuple

import pytest

from assignment_client import DEFAULT_RETRY, RetryPolicy, idempotent_methods, retry_service_config
from assignment_client.retry import FILES, channel_options


def declared_in_protos(proto_dir: pathlib.Path) -> Tuple[Set[Tuple[str, str]], Set[Tuple[str, str]]]:
    """Read from the .proto sources (not from the descriptors the package uses): every
    (service, method), and those declared NO_SIDE_EFFECTS or IDEMPOTENT without a request stream."""
    every: Set[Tuple[str, str]] = set()
    retryable: Set[Tuple[str, str]] = set()
    for path in sorted(proto_dir.glob("*.proto")):
        text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))
        package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M)
        assert package, path
        for service in re.finditer(r"\bservice\s+(\w+)\s*\{", text):
            # The service's body: up to its matching brace.
            depth, i = 1, service.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            body = text[service.end() : i - 1]
            rpc = re.compile(r"\brpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(?:stream\s+)?[\w.]+\s*\)\s*(;|\{(.*?)\})", re.S)
            for m in rpc.finditer(body):
                name = ("%s.%s" % (package.group(1), service.group(1)), m.group(1))
                every.add(name)
                level = re.search(r"idempotency_level\s*=\s*(\w+)", m.group(4) or "")
                if level and level.group(1) in ("NO_SIDE_EFFECTS", "IDEMPOTENT") and not m.group(2):
                    retryable.add(name)
    return every, retryable


def config_names(config: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(str(n["service"]), str(n["method"])) for mc in config["methodConfig"] for n in mc["name"]]


def test_the_config_names_exactly_the_idempotent_methods(proto_dir: pathlib.Path) -> None:
    every, retryable = declared_in_protos(proto_dir)
    # The parser saw every method there is (a parser that misses methods could miss idempotent ones).
    assert every == {(s.full_name, m.name) for f in FILES for s in f.services_by_name.values() for m in s.methods}
    assert retryable
    names = config_names(retry_service_config())
    assert len(names) == len(set(names))
    assert set(names) == retryable
    assert set(idempotent_methods()) == retryable
    # What the docs promise, spelled out: the sticky assignment calls and the reads; no stream of
    # requests and no mutation.
    assert ("assignment.v1.AssignmentService", "BulkAssign") in retryable
    assert ("assignment.v1.ExperimentService", "ExportAssignments") in retryable
    for never in ("StreamAssign", "ImportAssignments", "CreateExperiment", "UpdateExperiment", "SetOverrides", "CopyAssignments"):
        assert not [n for n in names if n[1] == never], never


def test_the_policy_is_what_grpc_expects() -> None:
    config = retry_service_config(RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=1.5, backoff_multiplier=1.6))
    (method_config,) = config["methodConfig"]
    assert method_config["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "1.5s",
        "backoffMultiplier": 1.6,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert DEFAULT_RETRY.to_json()["initialBackoff"] == "0.05s"
    assert json.loads(json.dumps(config)) == config


def test_channel_options() -> None:
    on = dict(channel_options(DEFAULT_RETRY))
    assert on["grpc.enable_retries"] == 1
    assert config_names(json.loads(on["grpc.service_config"])) == config_names(retry_service_config())
    assert on["grpc.initial_reconnect_backoff_ms"] == 50
    assert dict(channel_options(None)) == {"grpc.enable_retries": 0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_attempts": 1}, "max_attempts: must be 2..5"),
        ({"max_attempts": 6}, "max_attempts: must be 2..5"),
        ({"initial_backoff": 0}, "initial_backoff: must be more than 0"),
        ({"initial_backoff": 1.0, "max_backoff": 0.5}, "max_backoff: must be at least initial_backoff"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier: must be at least 1"),
        ({"retryable_status_codes": ()}, "retryable_status_codes: must name"),
    ],
)
def test_a_bad_policy_names_the_field(kwargs: Dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
