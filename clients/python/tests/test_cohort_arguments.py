"""stream_cohort refuses bad arguments before it calls anything."""

from __future__ import annotations

import pytest

from assignment_client import connect, max_batch


def test_the_largest_batch_follows_the_server_limits() -> None:
    assert [max_batch(n) for n in (1, 10, 11, 20, 100)] == [10_000, 10_000, 9_090, 5_000, 1_000]


def test_bad_arguments_name_the_parameter() -> None:
    # Nothing listens there; nothing is called either.
    with connect("127.0.0.1:9") as client:
        with pytest.raises(ValueError, match=r"batch_size: must be 1 to 10000 for 1 experiment\(s\)"):
            client.stream_cohort(["e"], ["u"], batch_size=10_001)
        with pytest.raises(ValueError, match=r"batch_size: must be 1 to 5000 for 20 experiment\(s\)"):
            client.stream_cohort(["e%d" % i for i in range(20)], ["u"], batch_size=5001)
        with pytest.raises(ValueError, match="batch_size: must be 1 to"):
            client.stream_cohort(["e"], ["u"], batch_size=0)
        with pytest.raises(ValueError, match="experiment_keys: must hold 1 to 100 keys"):
            client.stream_cohort([], ["u"])
        with pytest.raises(ValueError, match=r"experiment_keys\[1\]: 'e' appears twice"):
            client.stream_cohort(["e", "e"], ["u"])
        with pytest.raises(TypeError, match="experiment_keys: must be a sequence of keys, not one string"):
            client.stream_cohort("e", ["u"])
        with pytest.raises(TypeError, match="unit_ids: must be an iterable of ids, not one string"):
            client.stream_cohort(["e"], "u-1")
        with pytest.raises(ValueError, match="max_in_flight: must be 1 or more"):
            client.stream_cohort(["e"], ["u"], max_in_flight=0)


def test_bad_connection_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="address: must be host:port"):
        connect("")
    with pytest.raises(ValueError, match="token: must be printable ASCII"):
        connect("127.0.0.1:9", "tok\nen")
    with pytest.raises(ValueError, match="timeout: must be more than 0 seconds"):
        connect("127.0.0.1:9", timeout=0)
