"""The dlt peer benchmark keeps working: a small run checks both sides' output (ours: each row emitted
once per version, the re-read all duplicates; dlt: the rows in duckdb) and reports every ratio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smoke_run_checks_both_sides_and_reports_the_ratios(tmp_path):
    command = [
        sys.executable, str(PROJECT_ROOT / "benchmarks" / "peer_dlt.py"),
        "--rows", "3000", "--rounds", "2", "--out", str(tmp_path), "--name", "peer",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "peer.json").read_text())
    assert result["dlt"]["backend"] == "connectorx" and result["rows"] == 3000
    for step in ("first_load", "changed", "reread"):
        assert result["rows_per_s"]["ours"][step] > 0 and result["rows_per_s"]["dlt"][step] > 0
        assert result["ours_over_dlt"][step] > 0 and result["ceiling_over_dlt"][step] > 0
    assert len(result["seconds_per_round"]) == 2
    assert "ours/dlt" in done.stdout
