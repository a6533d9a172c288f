"""Shared fixtures. The unit tests need nothing; the tests marked ``live`` need a running server:

    ASSIGNMENT_ADDRESS      host:port of the server (the live tests are skipped without it)
    ASSIGNMENT_TOKEN        the admin token, when the server demands one
    ASSIGNMENT_TLS_ADDRESS  host:port of a server speaking TLS (same token), and
    ASSIGNMENT_CA_FILE      the PEM certificate to trust for it (the TLS test is skipped without)

They read the repository's contract files, found from this folder (or given by
ASSIGNMENT_VECTORS and ASSIGNMENT_PROTO_DIR).
"""

from __future__ import annotations

import os
import pathlib
import uuid
from typing import Iterator, Optional

import pytest

from assignment_client import Client, connect

REPO = pathlib.Path(__file__).resolve().parents[3]


def _path(env: str, default: pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(os.environ.get(env) or default)
    if not path.exists():
        raise FileNotFoundError("%s not found: run the tests from the repository, or set %s" % (path, env))
    return path


@pytest.fixture(scope="session")
def vectors_path() -> pathlib.Path:
    return _path("ASSIGNMENT_VECTORS", REPO / "spec" / "vectors" / "assignment-v1.json")


@pytest.fixture(scope="session")
def proto_dir() -> pathlib.Path:
    return _path("ASSIGNMENT_PROTO_DIR", REPO / "proto" / "assignment" / "v1")


@pytest.fixture(scope="session")
def address() -> str:
    value = os.environ.get("ASSIGNMENT_ADDRESS")
    if not value:
        pytest.skip("ASSIGNMENT_ADDRESS is not set: no live server to test against")
    return value


@pytest.fixture(scope="session")
def token() -> Optional[str]:
    return os.environ.get("ASSIGNMENT_TOKEN") or None


@pytest.fixture()
def client(address: str, token: Optional[str]) -> Iterator[Client]:
    with connect(address, token, timeout=30) as c:
        yield c


@pytest.fixture()
def unique() -> str:
    """A fresh suffix for experiment keys, so that runs against one server never collide."""
    return uuid.uuid4().hex[:12]
