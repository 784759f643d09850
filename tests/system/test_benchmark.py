"""The benchmark keeps working: a smoke run (10k rows, every path) writes JSON and a chart, leaves nothing."""

from __future__ import annotations

import json
import math
import operator
import statistics
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PG_DSN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATHS = ("seed_path", "changed", "duplicates", "first_load", "redis_ceiling_changed",
         "redis_ceiling_duplicates", "sql_ceiling", "encode_only")  # fmt: skip
COMPARE = {">=": operator.ge, "<=": operator.le}


def test_smoke_run_writes_json_and_png_and_cleans_up(tmp_path, redis_client):
    smoke = ["--sizes", "10000", "--seed-rows", "2000", "--cycles", "10", "--idle", "5", "--rounds", "2"]
    smoke += ["--name", "smoke"]
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench.py"), *smoke, "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "smoke.json").read_text())
    at = result["sizes"]["10000"]
    for path in PATHS:
        figure = at[path]
        assert figure["rounds"] == 2, path
        assert figure["rows"] == (2000 if path == "seed_path" else 10000), path
        # a finite rate that is the rows over the seconds reported beside it (seconds rounded to 0.1 ms)
        assert figure["seconds"] > 0 and math.isfinite(figure["rows_per_s"]), (path, figure)
        assert figure["rows_per_s"] == pytest.approx(figure["rows"] / figure["seconds"], rel=0.05), path
    # peak RSS of the operator's paths: measured, and far below the 150 MB target for 10,000 rows
    for path in ("changed", "duplicates", "first_load"):
        assert 0 <= at[path]["peak_rss_growth_mb"] < 150, (path, at[path])
    assert 100 <= result["payload_bytes"] <= 300
    idle = result["idle_cycle"]
    assert idle["cycles"] == 5 and 0 < idle["min_ms"] <= idle["median_ms"], idle
    small = result["small_cycles"]
    assert small["cycles"] == len(small["durations_ms"]) == 10
    assert small["median_ms"] == pytest.approx(statistics.median(small["durations_ms"]), abs=0.01)
    # every measured cycle changed rows (some ids drawn twice), and nothing more was sent
    assert 0 < small["emitted"] <= small["cycles"] * small["changes_per_cycle"], small
    assert small["seen_size_at_start"] > 0
    # the targets are this run's figures, judged against their bounds
    targets = {t["target"]: t for t in result["targets"]}
    assert set(targets) >= {"changed rows/s", "idle cycle ms"}
    assert targets["changed rows/s"]["value"] == pytest.approx(at["changed"]["rows_per_s"], abs=0.001)
    assert targets["idle cycle ms"]["value"] == pytest.approx(idle["median_ms"], abs=0.001)
    for target in result["targets"]:
        op, bound = target["bound"].split()
        assert target["met"] == COMPARE[op](target["value"], float(bound)), target
    assert set(result["ratios"]) == {"changed_over_seed", "duplicates_over_seed", "changed_over_min_ceiling",
                                     "duplicates_over_min_ceiling", "changed_over_redis_ceiling",
                                     "first_load_over_min_ceiling"}  # fmt: skip
    # the targets under stable names, the seed path's 20x no longer among them
    names = {t["name"] for t in result["targets"]}
    wanted = ("duplicates_over_min_ceiling", "changed_over_redis_ceiling", "first_load_over_min_ceiling")
    assert names >= {*wanted, "encoding_module_lines"}
    assert "changed / seed path" not in targets
    assert result["ratios"]["changed_over_redis_ceiling"] == pytest.approx(
        at["changed"]["rows_per_s"] / at["redis_ceiling_changed"]["rows_per_s"], abs=0.001
    )
    seed = at["seed_path"]["rows_per_s"]
    assert result["ratios"]["changed_over_seed"] == pytest.approx(
        at["changed"]["rows_per_s"] / seed, abs=0.01
    )
    assert result["ratios"]["duplicates_over_seed"] == pytest.approx(
        at["duplicates"]["rows_per_s"] / seed, abs=0.01
    )
    assert (tmp_path / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targets" in done.stdout and "rows/s" in done.stdout

    run_id = result["run_id"]
    assert not list(redis_client.scan_iter(match=f"*bench:{run_id}:*"))
    with psycopg.connect(PG_DSN) as db:
        left = db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (f"bench_{run_id}%",))
        assert left.fetchone()[0] == 0


def _benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run benchmarks/<script> with ``args`` from the project root; it must succeed."""
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_emit_cost_smoke_run_prints_each_part(redis_client):
    done = _benchmark("emit_cost.py", "--rounds", "1", "--batches", "2", timeout=120)
    for part in ("emit.lua", "digest HSET", "ZADD to seen", "HMGET reads", "without the XADD"):
        assert part in done.stdout, part
    assert not redis_client.keys("{emit-cost:*")  # nothing left behind


def test_instruction_counts_smoke_run_prints_each_stage(tmp_path):
    out = tmp_path / "instructions.json"
    done = _benchmark("instructions.py", "--rows", "2000", "--json", str(out))
    result = json.loads(out.read_text())
    per_row = result["instructions_per_row"]
    # every stage ran on the rows: fetch and digest cost something per row, far less than a million
    assert 1_000 < per_row["fetch"] < 1_000_000 and 1_000 < per_row["digest"] < 1_000_000, per_row
    assert result["unchanged_row"] == per_row["fetch"] + per_row["digest"] + per_row["compare"]
    assert result["changed_row"] == per_row["fetch"] + per_row["digest"] + per_row["encode"]
    assert result["changed_row_sent"] == result["changed_row"] + per_row["send"] and per_row["send"] > 0
    for stage in ("fetch", "digest", "encode", "send", "compare"):
        assert stage in done.stdout
    with psycopg.connect(PG_DSN) as db:
        left = db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'instr_%'").fetchone()[0]
        assert left == 0


def test_redis_instruction_counts_smoke_run_counts_each_step(tmp_path):
    """One batch per step, counted by callgrind on a redis-server the script starts and stops itself."""
    out = tmp_path / "redis.json"
    _benchmark("redis_instructions.py", "--batches", "1", "--json", str(out))
    today = json.loads(out.read_text())["today"]
    assert set(today) == {"new", "changed", "older", "precheck"}
    # an XADD per new or changed row costs thousands of instructions; a read-only check of a known row less
    assert all(1_000 < n < 1_000_000 for n in today.values()), today
    assert today["precheck"] < today["changed"] and today["older"] < today["changed"], today


def test_cycle_instructions_harness_runs_its_cycles_without_valgrind():
    """The whole-cycle count needs five minutes of valgrind; CI runs its cycles, checked, without it."""
    done = _benchmark("cycle_instructions.py", "--rows", "500", "--no-valgrind")
    assert "cycles ran" in done.stdout
