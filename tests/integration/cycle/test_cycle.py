"""The cycle of DESIGN.md on real Postgres, SQLite and Redis."""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.integration.conftest import read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration


def _rows(n: int, at: datetime, start: int = 1) -> list[tuple[int, str, datetime]]:
    return [(i, f"customer {i}", at - timedelta(seconds=n - i)) for i in range(start, start + n)]


def test_first_cycle_emits_every_row_once_then_only_changes(source, stream, redis_client):
    now = source.now()
    source.insert(_rows(250, now - timedelta(minutes=5)))

    first = run_cycle(source, stream)
    assert (first["rows_read"], first["emitted"], first["duplicates"]) == (250, 250, 0)
    messages = read_stream(redis_client, stream)
    assert sorted(int(m["pkey"]) for m in messages) == list(range(1, 251))
    assert {m["variant"] for m in messages} == {"customer.v1"}

    second = run_cycle(source, stream)
    assert (second["emitted"], second["duplicates"]) == (0, 250)

    source.set(42, "renamed", source.now())
    third = run_cycle(source, stream)
    assert third["emitted"] == 1
    last = read_stream(redis_client, stream)[-1]
    assert last["pkey"] == "42"
    assert json.loads(last["payload"])["name"] == "renamed"
    assert len(read_stream(redis_client, stream)) == 251


def test_message_fields_and_exact_epoch(source, stream, redis_client):
    at = datetime(2026, 11, 20, 8, 30, 15, 123456, tzinfo=UTC)
    source.insert([(7, "Ada", at)])
    run_cycle(source, stream)
    (message,) = read_stream(redis_client, stream)
    assert set(message) == {"payload", "variant", "epoch", "pkey"}
    assert message["epoch"] == str(datetime_to_us(at, UTC))
    payload = json.loads(message["payload"])
    assert list(payload) == ["id", "name", "updated_at"]
    assert payload["id"] == 7 and payload["name"] == "Ada"
    assert datetime.fromisoformat(payload["updated_at"].replace(" ", "T")).replace(tzinfo=UTC) == at


def test_late_commit_inside_lookback_is_emitted_older_is_the_documented_limit(source, stream, redis_client):
    now = source.now()
    source.insert(_rows(10, now - timedelta(minutes=1)))
    run_cycle(source, stream, lookback=timedelta(hours=1))
    source.insert([(100, "late but inside", now - timedelta(minutes=40))])
    source.insert([(101, "too late", now - timedelta(hours=2))])

    figures = run_cycle(source, stream, lookback=timedelta(hours=1))

    assert figures["emitted"] == 1
    pkeys = [m["pkey"] for m in read_stream(redis_client, stream)]
    assert "100" in pkeys
    assert "101" not in pkeys  # committed more than `lookback` after its timestamp: missed


def test_same_epoch_new_content_is_a_new_version_identical_reread_is_not(source, stream, redis_client):
    at = source.now() - timedelta(minutes=2)
    source.insert([(1, "first", at), (2, "other", at)])
    run_cycle(source, stream)

    source.set(1, "second", at)  # same timestamp, new content
    figures = run_cycle(source, stream)
    assert (figures["emitted"], figures["duplicates"]) == (1, 1)

    again = run_cycle(source, stream)
    assert again["emitted"] == 0
    names = [json.loads(m["payload"])["name"] for m in read_stream(redis_client, stream) if m["pkey"] == "1"]
    assert names == ["first", "second"]


def test_cycle_dying_after_first_batch_is_completed_by_rerun(source, stream, redis_client, monkeypatch):
    now = source.now()
    source.insert(_rows(50, now - timedelta(minutes=30)))
    run_cycle(source, stream, sql=source.newest_first, batch_size=100)
    committed = watermark(redis_client, stream)
    source.insert(_rows(300, now - timedelta(seconds=10), start=1000))

    real_emit = RedisStreamHook.emit
    calls = []

    def dying_emit(self, *args, **kwargs):
        if calls:
            raise ConnectionError("worker lost mid-cycle")
        calls.append(1)
        return real_emit(self, *args, **kwargs)

    monkeypatch.setattr(RedisStreamHook, "emit", dying_emit)
    with pytest.raises(ConnectionError):
        run_cycle(source, stream, sql=source.newest_first, batch_size=100)
    assert len(read_stream(redis_client, stream)) == 50 + 100  # the first batch (newest rows) landed
    assert watermark(redis_client, stream) == committed  # the watermark did not move

    monkeypatch.setattr(RedisStreamHook, "emit", real_emit)
    figures = run_cycle(source, stream, sql=source.newest_first, batch_size=100)
    assert figures["emitted"] == 200
    counts = Counter(m["pkey"] for m in read_stream(redis_client, stream))
    assert len(counts) == 350 and set(counts.values()) == {1}
    assert watermark(redis_client, stream) > committed


def test_script_flush_between_cycles_is_recovered(source, stream, redis_client):
    source.insert(_rows(20, source.now() - timedelta(minutes=1)))
    run_cycle(source, stream)
    redis_client.script_flush()
    source.set(3, "after flush", source.now())
    figures = run_cycle(source, stream)
    assert (figures["emitted"], figures["duplicates"]) == (1, 19)


def test_seen_stays_near_rows_changed_within_lookback(source, stream, redis_client):
    """20 cycles, each adding 100 rows stamped 10 minutes after the previous ones; lookback 15 minutes."""
    base = source.now() - timedelta(hours=5)
    for cycle in range(20):
        at = base + timedelta(minutes=10 * cycle)
        source.insert([(cycle * 100 + i, f"v{cycle}", at + timedelta(seconds=i)) for i in range(100)])
        run_cycle(source, stream, lookback=timedelta(minutes=15), start_from=base - timedelta(minutes=1))
    assert len(read_stream(redis_client, stream)) == 2000
    seen = redis_client.zcard("{" + stream + "}:seen")
    assert seen <= 300, f"seen holds {seen} members for 2000 rows ever seen"
    assert seen >= 100  # the newest versions are kept: re-reading them must stay a duplicate
    assert redis_client.hlen("{" + stream + "}:digest") == seen
    assert run_cycle(source, stream, lookback=timedelta(minutes=15))["emitted"] == 0


def test_watermark_never_passes_the_database_clock(source, stream, redis_client):
    future = source.now() + timedelta(days=30)
    source.insert([(1, "from the future", future)])
    figures = run_cycle(source, stream)
    assert figures["emitted"] == 1
    assert watermark(redis_client, stream) < datetime_to_us(future, UTC)
    source.insert([(2, "normal change", source.now())])
    assert run_cycle(source, stream)["emitted"] == 1


def test_maxlen_caps_the_stream_approximately(source, stream, redis_client):
    source.insert(_rows(3000, source.now() - timedelta(minutes=1)))
    run_cycle(source, stream, maxlen=500, batch_size=1000)
    length = redis_client.xlen(stream)
    assert 500 <= length < 1000


def test_figures_and_state(source, stream, redis_client):
    source.insert(_rows(5, source.now() - timedelta(minutes=1)))
    figures = run_cycle(source, stream)
    assert set(figures) >= {
        "rows_read", "emitted", "duplicates", "window_start", "window_end",
        "watermark", "lag_seconds", "duration_seconds",
    }  # fmt: skip
    # the newest row is a minute older than the database clock the cycle read, and the lag says so
    assert 60 <= figures["lag_seconds"] < 120, figures
    state = redis_client.hgetall("{" + stream + "}:state")
    assert json.loads(state[b"last_cycle"])["emitted"] == 5


def test_one_info_line_per_cycle_without_payloads(pg_table, stream, capfd):
    """Task logs go through Airflow's structlog to the task's output, which is what operators read."""
    pg_table.insert([(1, "secret-name-in-payload", pg_table.now())])
    run_cycle(pg_table, stream)
    output = capfd.readouterr()
    text = output.out + output.err
    cycle_lines = [line for line in text.splitlines() if "rows_read=" in line]
    assert len(cycle_lines) == 1
    assert "[info" in cycle_lines[0] and "emitted=1" in cycle_lines[0]
    assert "secret-name-in-payload" not in text


def test_a_cycle_leaves_the_garbage_collector_and_thread_switching_as_it_found_them(
    pg_table, stream, monkeypatch
):
    """By default a cycle touches no process-wide setting; with pause_gc the cyclic collector pauses
    while it reads and sends, and comes back after it, when it succeeds and when it fails."""
    from airflow_dbstream.cycle.pipeline import Pipeline

    collecting, real_prepare = [], Pipeline.prepare

    def prepare(self, *args, **kwargs):
        collecting.append(gc.isenabled())
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "prepare", prepare)
    pg_table.insert(_rows(3000, pg_table.now() - timedelta(minutes=5)))
    interval = sys.getswitchinterval()
    assert run_cycle(pg_table, stream, batch_size=100)["emitted"] == 3000
    assert set(collecting) == {True} and sys.getswitchinterval() == interval
    pg_table.execute("UPDATE {table} SET name = name || '+', updated_at = clock_timestamp()")
    collecting.clear()
    assert run_cycle(pg_table, stream, batch_size=100, pause_gc=True)["emitted"] == 3000
    assert set(collecting) == {False} and gc.isenabled() and sys.getswitchinterval() == interval
    # A NULL epoch in row 2500 fails the next window mid-read.
    bad = pg_table.sql.replace(
        "SELECT id, name, updated_at",
        "SELECT id, name, CASE WHEN id = 2500 THEN NULL ELSE updated_at END AS updated_at",
    )
    with pytest.raises(DbStreamInputError, match="is NULL"):
        run_cycle(pg_table, stream, batch_size=100, sql=bad, pause_gc=True)
    assert gc.isenabled() and sys.getswitchinterval() == interval
    gc.disable()
    try:  # a host that runs without the collector keeps it off
        with pytest.raises(DbStreamInputError, match="is NULL"):
            run_cycle(pg_table, stream, batch_size=100, sql=bad, pause_gc=True)
        assert not gc.isenabled()
    finally:
        gc.enable()
