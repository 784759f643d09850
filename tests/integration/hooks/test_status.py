"""The status command on a real stream: watermark, lag, sizes, the last cycle, consumer groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from airflow_dbstream.__main__ import main
from airflow_dbstream.hooks.status import find_streams
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import run_cycle

pytestmark = pytest.mark.integration


@pytest.fixture
def stream_with_group(pg_table, stream, redis_client):
    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now) for i in range(1, 11)])
    run_cycle(pg_table, stream)
    redis_client.xgroup_create(stream, "billing", id="0")
    redis_client.xgroup_create(stream, "search", id="$")
    redis_client.xreadgroup("billing", "worker-1", {stream: ">"}, count=4)  # 4 pending, 6 not delivered
    return stream


def test_status_json_has_every_figure(stream_with_group, capsys):
    assert main(["status", "--redis-conn-id", "redis_test", "--stream", stream_with_group, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stream"] == stream_with_group
    assert status["watermark"] and status["watermark_us"] > 0
    assert 0 <= status["lag_seconds"] < 60
    assert status["seen_size"] == 10 and status["stream_length"] == 10
    assert status["last_cycle"]["rows_read"] == 10 and status["last_cycle"]["emitted"] == 10
    groups = {g["name"]: g for g in status["groups"]}
    assert (groups["billing"]["pending"], groups["billing"]["lag"]) == (4, 6)
    assert (groups["search"]["pending"], groups["search"]["lag"]) == (0, 0)


def test_status_command_prints_the_figures(stream_with_group):
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_dbstream", "status", "--redis-conn-id", "redis_test",
         "--stream", stream_with_group],
        env=os.environ, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"stream:         {stream_with_group}" in out
    assert "seen size:      10" in out and "stream length:  10" in out
    assert "last cycle:     rows_read=10 emitted=10 duplicates=0" in out
    assert "group billing: pending=4 lag=6 consumers=1" in out
    assert "group search: pending=0 lag=0 consumers=0" in out


def test_status_of_an_unknown_stream_says_so_in_one_line(stream, capsys):
    assert main(["status", "--redis-conn-id", "redis_test", "--stream", stream]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"status: stream {stream!r} has no messages and no state on connection 'redis_test': "
        "check the stream key and the connection's db."
    ]
    assert captured.out == ""


def test_streams_are_found_by_their_state_hashes(pg_table, new_stream, redis_client):
    orders_eu, orders_us, invoices = new_stream("orders.eu"), new_stream("orders.us"), new_stream("invoices")
    tagged = new_stream("orders{eu}")  # a stream with its own hash tag: its state is orders{eu}:state
    pg_table.insert([(1, "a", pg_table.now())])
    for name in (orders_eu, orders_us, invoices, tagged):
        run_cycle(pg_table, name)
    prefix = orders_eu.removesuffix("orders.eu")
    stray = prefix + "orders of no stream:state"  # a hash named like a state, of no valid stream name
    redis_client.hset(stray, "watermark", 1)
    assert find_streams(redis_client, prefix + "orders*") == sorted([orders_eu, orders_us, tagged])
    assert find_streams(redis_client, prefix + "*") == sorted([orders_eu, orders_us, invoices, tagged])
    assert find_streams(redis_client, prefix + "nothing*") == []
    redis_client.delete(stray)


def test_freshness_stays_small_on_an_idle_table_polled_on_time_while_the_data_age_grows(
    pg_table, stream, capsys
):
    pg_table.insert([(1, "only change", pg_table.now())])
    run_cycle(pg_table, stream)
    time.sleep(2.0)
    run_cycle(pg_table, stream)  # nothing changed: the stream is as fresh as the source
    capsys.readouterr()  # the cycles' log lines
    assert main(["status", "--redis-conn-id", "redis_test", "--stream", stream, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert 0 <= status["freshness_seconds"] < 1.5
    assert status["data_age_seconds"] >= 2.0 and status["data_age_seconds"] == status["lag_seconds"]


def test_status_counts_the_dead_letters_of_a_stream_that_dead_letters(pg_table, stream, redis_client, capsys):
    now = pg_table.now()
    pg_table.insert([(1, "good", now), (2, "bad", now)])
    sql = pg_table.sql.replace("SELECT id,", "SELECT CASE WHEN name = 'bad' THEN NULL ELSE id END AS id,")
    figures = run_cycle(pg_table, stream, sql=sql, on_bad_row="dead_letter")
    assert figures["dead_lettered"] == 1
    kept = json.loads(redis_client.hget("{" + stream + "}:state", "status"))
    assert kept["dead_length"] == 1  # recorded after the cycle, for dashboards
    capsys.readouterr()
    assert main(["status", "--redis-conn-id", "redis_test", "--stream", stream, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dead_length"] == 1 and status["dead_stream"] == "{" + stream + "}:dead"
    assert status["last_cycle"]["dead_lettered"] == 1
    assert main(["status", "--redis-conn-id", "redis_test", "--stream", stream]) == 0
    out = capsys.readouterr().out
    assert "dead letters:   1 (in {" + stream + "}:dead)" in out
    assert "last cycle:     rows_read=2 emitted=1 duplicates=0 deletes=0 dead_lettered=1" in out


def test_a_stream_that_fails_on_bad_rows_records_no_dead_length(pg_table, stream, redis_client):
    pg_table.insert([(1, "good", pg_table.now())])
    run_cycle(pg_table, stream)
    assert "dead_length" not in json.loads(redis_client.hget("{" + stream + "}:state", "status"))
