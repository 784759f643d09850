"""Continuous mode: cycles back to back for run_for, poll_interval apart, the status kept each cycle."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import make_operator, read_stream

pytestmark = pytest.mark.integration


def test_cycles_run_back_to_back_and_pick_up_changes_within_the_poll_interval(pg_table, stream, redis_client):
    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now - timedelta(seconds=10)) for i in range(1, 51)])
    operator = make_operator(pg_table, stream, run_for=timedelta(seconds=2.5), poll_interval=0.2)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(operator.execute(context={})))
    started = time.monotonic()
    worker.start()
    deadline = started + 2
    while len(read_stream(redis_client, stream)) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    committed = time.monotonic()
    pg_table.insert([(51, "new customer", pg_table.now())])
    while len(read_stream(redis_client, stream)) < 51 and time.monotonic() < deadline + 1:
        time.sleep(0.01)
    seen_after = time.monotonic() - committed
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert len(read_stream(redis_client, stream)) == 51
    assert seen_after < 0.2 + 0.5  # poll interval plus a generous cycle time on a busy CI machine
    assert 2.3 <= time.monotonic() - started < 6
    assert result["cycles"] >= 5
    assert result["emitted_total"] == 51
    assert result["rows_read_total"] >= 51 * 2  # the lookback window is re-read every cycle
    assert result["duplicates_total"] == result["rows_read_total"] - 51

    status = json.loads(redis_client.hget("{" + stream + "}:state", "status"))
    assert status["seen_size"] == 51 and status["stream_length"] == 51 and status["groups"] == []


def test_without_run_for_one_cycle_runs(pg_table, stream):
    pg_table.insert([(1, "a", pg_table.now())])
    result = make_operator(pg_table, stream).execute(context={})
    assert "cycles" not in result and result["emitted"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("run_for", timedelta(0)), ("run_for", -1), ("poll_interval", timedelta(seconds=-1)), ("run_for", "5m")],
)
def test_bad_durations_are_refused_at_parse_time(pg_table, stream, field, value):
    with pytest.raises(DbStreamInputError, match=field):
        make_operator(pg_table, stream, **{field: value})
