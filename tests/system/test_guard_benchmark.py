"""The guard benchmark keeps working: a short run loses nothing on either stream, and the guard's
short lookback reads fewer rows per cycle than the long one, more only while the transaction is held."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smoke_run_loses_nothing_and_reads_less_with_the_guard(tmp_path):
    out = tmp_path / "guard.json"
    smoke = ["--seconds", "24", "--hold", "8", "--rate", "100", "--long-lookback", "12", "--out", str(out)]
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "guard.py"), *smoke]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    a, b = result["a"], result["b"]
    assert result["versions_committed"] > 1500
    for stream in (a, b):
        assert (stream["lost"], stream["duplicated"], stream["held_version_emitted"]) == (0, 0, 1), stream
    assert not a["guard"] and b["guard"] and b["lookback_seconds"] < a["lookback_seconds"]
    assert b["rows_read_per_cycle_steady"] * 2 < a["rows_read_per_cycle_steady"]
    assert b["max_guard_held_seconds"] > 3  # the held transaction held b's watermark back
    assert b["max_rows_read_during_hold"] > 1.5 * b["rows_read_per_cycle_steady"]  # its window grew
    assert a["max_guard_held_seconds"] == 0
