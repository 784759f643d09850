"""The status command over many streams (--pattern, --all, repeated --stream), its exit codes for cron
and alerts, and its one-line errors, on the real Redis (python -m airflow_dbstream, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from airflow_dbstream.__main__ import main
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import REDIS_CONN, run_cycle, set_connection

pytestmark = pytest.mark.integration


def status(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow_dbstream", "status", *args],
        env=env or os.environ, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, starts: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines()[0].startswith(starts), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def three_streams(pg_table, new_stream):
    """orders.eu read 3 s before orders.us and invoices: the one stale at --max-freshness 2."""
    names = {name: new_stream(name) for name in ("orders.eu", "orders.us", "invoices")}
    pg_table.insert([(1, "a", pg_table.now()), (2, "b", pg_table.now())])
    run_cycle(pg_table, names["orders.eu"])
    time.sleep(3.0)
    run_cycle(pg_table, names["orders.us"])
    run_cycle(pg_table, names["invoices"])
    return names


def test_pattern_prints_one_line_per_stream_and_exits_1_on_a_stale_one(three_streams, capsys):
    # In this process: an interpreter's start (2-8 s here) would age the fresh streams past the threshold.
    prefix = three_streams["orders.eu"].removesuffix("orders.eu")
    capsys.readouterr()
    args = ["--redis-conn-id", "redis_test", "--pattern", prefix + "*", "--max-freshness", "2"]
    code = main(["status", *args])
    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["STREAM", "CONNECTION", "FRESHNESS_S", "DATA_AGE_S", "LENGTH", "PENDING",
                                "LAST_CYCLE", "STATE"]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == sorted(three_streams.values())
    assert rows[three_streams["orders.eu"]].endswith("STALE (> 2 s)")
    assert rows[three_streams["orders.us"]].endswith("ok") and rows[three_streams["invoices"]].endswith("ok")
    assert all(row.split()[4] == "2" for row in rows.values())  # both rows in every stream


def test_pattern_as_json_and_a_threshold_all_meet(three_streams):
    prefix = three_streams["orders.eu"].removesuffix("orders.eu")
    proc = status("--redis-conn-id", "redis_test", "--pattern", prefix + "orders*", "--max-freshness", "60",
                  "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    figures = {f["stream"]: f for f in json.loads(proc.stdout)}
    assert sorted(figures) == sorted([three_streams["orders.eu"], three_streams["orders.us"]])
    eu, us = figures[three_streams["orders.eu"]], figures[three_streams["orders.us"]]
    assert eu["freshness_seconds"] - us["freshness_seconds"] >= 3.0 and us["freshness_seconds"] >= 0
    assert not eu["stale"] and not us["stale"] and eu["redis_conn_id"] == "redis_test"
    assert eu["last_cycle"]["emitted"] == 2 and eu["stream_length"] == 2


def test_all_reads_the_streams_of_the_yaml_sources(three_streams, new_stream, tmp_path):
    never = new_stream("never_ran")
    sources = [("orders_eu", three_streams["orders.eu"]), ("invoices", three_streams["invoices"]),
               ("never", never)]  # fmt: skip
    config = tmp_path / "streams.yaml"
    config.write_text(
        "defaults: {sql_conn_id: pg_test, redis_conn_id: redis_test, sql: SELECT 1, pkey_column: id,\n"
        "           epoch_column: updated_at, lookback: 1m, variant: v1}\nsources:\n"
        + "".join(f"  - {{name: {name}, stream: '{stream}'}}\n" for name, stream in sources)
    )
    proc = status("--all", "--config", str(config))
    assert proc.returncode == 0, proc.stderr  # no threshold: every status was read
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert sorted(rows) == sorted(stream for _name, stream in sources)
    assert rows[never].endswith("no cycle yet") and rows[three_streams["invoices"]].endswith("ok")

    proc = status("--all", "--config", str(config), "--max-freshness", "60", "--json")
    assert proc.returncode == 1  # a configured stream without a cycle yet is not fresh
    stale = {f["stream"]: f["stale"] for f in json.loads(proc.stdout)}
    assert stale == {three_streams["orders.eu"]: False, three_streams["invoices"]: False, never: True}


def test_an_unknown_connection_is_one_line_and_exit_2():
    proc = status("--redis-conn-id", "no_such_conn", "--stream", "orders")
    assert_one_line_error(proc, "status: connection 'no_such_conn' is not defined: Airflow finds it neither")
    assert "AIRFLOW_CONN_NO_SUCH_CONN" in proc.stderr and "airflow connections add" in proc.stderr


def test_an_unknown_stream_a_bad_name_and_no_selection_are_one_line_and_exit_2(new_stream):
    assert_one_line_error(
        status("--redis-conn-id", "redis_test", "--stream", new_stream("typo")), "status: stream 'test:"
    )
    assert_one_line_error(status("--stream", "bad name"), "status: Invalid stream name 'bad name'")
    assert_one_line_error(status(), "status: say which streams: --stream KEY, --all")


def test_a_sources_file_that_is_not_there_is_one_line_and_exit_2(tmp_path):
    proc = status("--all", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(proc, f"status: {tmp_path / 'missing.yaml'}: cannot read the sources file")


def test_an_unreachable_redis_is_one_line_and_exit_2_without_retrying(monkeypatch):
    set_connection(monkeypatch, "redis_down", {**REDIS_CONN, "port": 1})
    started = time.monotonic()
    proc = status("--redis-conn-id", "redis_down", "--stream", "orders")
    assert_one_line_error(proc, "status: Redis of connection 'redis_down' failed: ConnectionError:")
    assert "retry" not in proc.stderr
    assert time.monotonic() - started < 60  # the interpreter's start only, not 5 retries' backoff


def test_a_pattern_matching_nothing_or_on_an_unknown_connection_is_one_line_and_exit_2(new_stream, capsys):
    nothing = new_stream("none") + "*"
    assert main(["status", "--redis-conn-id", "redis_test", "--pattern", nothing]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"status: no stream matches {nothing!r} on connection 'redis_test' (no <tag>:state hash of that "
        "name): check the pattern and the connection's db."
    ]
    assert captured.out == ""
    assert main(["status", "--redis-conn-id", "no_such_conn", "--pattern", "*"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and "'no_such_conn' is not defined" in captured.err
    assert captured.out == ""
