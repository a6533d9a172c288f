"""The README's Python examples run as written, in order, against a live server."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.live
def test_the_readme_examples_run(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 5
    monkeypatch.setenv("ASSIGNMENT_ADDRESS", address)
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    printed = out.getvalue()
    assert "613153351" in printed
    assert "'Assign', 'AssignUnit', 'BulkAssign', 'MatrixAssign', 'ResolveParams', 'BulkResolveParams', 'GetExperiment'" in printed
    # The cohort's split: both variants among the enrolled 20 %, and units outside the rollout.
    assert "(('control', True)," in printed and "(('green', True)," in printed and "(('control', False)," in printed
