"""The benchmark keeps working: a smoke run (10k rows, every path) writes JSON and a chart, leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PG_DSN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATHS = ("seed_path", "changed", "duplicates", "first_load", "redis_ceiling_changed",
         "redis_ceiling_duplicates", "sql_ceiling", "encode_only")  # fmt: skip


def test_smoke_run_writes_json_and_png_and_cleans_up(tmp_path, redis_client):
    smoke = ["--sizes", "10000", "--seed-rows", "2000", "--cycles", "10", "--idle", "5", "--rounds", "2"]
    smoke += ["--name", "smoke"]
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench.py"), *smoke, "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "smoke.json").read_text())
    at = result["sizes"]["10000"]
    for path in PATHS:
        assert at[path]["rows_per_s"] > 0 and at[path]["rounds"] == 2, path
    assert at["seed_path"]["rows"] == 2000 and at["changed"]["rows"] == 10000
    assert at["changed"]["peak_rss_growth_mb"] >= 0
    assert 100 <= result["payload_bytes"] <= 300
    assert result["idle_cycle"]["median_ms"] > 0
    assert len(result["small_cycles"]["durations_ms"]) == 10
    assert result["small_cycles"]["seen_size_at_start"] > 0
    assert {t["target"] for t in result["targets"]} >= {"changed rows/s", "idle cycle ms"}
    assert set(result["ratios"]) == {"changed_over_seed", "duplicates_over_seed", "changed_over_min_ceiling",
                                     "duplicates_over_min_ceiling"}  # fmt: skip
    assert (tmp_path / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targets" in done.stdout and "rows/s" in done.stdout

    run_id = result["run_id"]
    assert not list(redis_client.scan_iter(match=f"*bench:{run_id}:*"))
    with psycopg.connect(PG_DSN) as db:
        left = db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (f"bench_{run_id}%",))
        assert left.fetchone()[0] == 0


def test_emit_cost_smoke_run_prints_each_part(redis_client):
    command = [
        sys.executable,
        str(PROJECT_ROOT / "benchmarks" / "emit_cost.py"),
        "--rounds",
        "1",
        "--batches",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for part in ("emit.lua", "digest HSET", "ZADD to seen", "ZMSCORE/HMGET reads", "without the XADD"):
        assert part in done.stdout, part
    assert not redis_client.keys("{emit-cost:*")  # nothing left behind
