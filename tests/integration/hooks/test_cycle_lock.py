"""One cycle per stream at a time: overlapping cycles skip or wait, expired leases free themselves,
and a holder that overruns its lease cannot write."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_dbstream.core.errors import LockLostError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.rows import Message
from airflow_dbstream.hooks import lease as lease_module
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.integration.conftest import read_stream, run_cycle, watermark
from tests.integration.hooks.scenarios import assert_exactly_once, versions

pytestmark = pytest.mark.integration


def _seed(table, n: int, name: str = "v1") -> set[tuple[str, str]]:
    at = table.now() - timedelta(minutes=5)
    table.insert([(i, f"{name}-{i}", at + timedelta(milliseconds=i)) for i in range(1, n + 1)])
    return {(str(i), f"{name}-{i}") for i in range(1, n + 1)}


def _slow_emits(monkeypatch, seconds: float) -> None:
    real = RedisStreamHook.emit

    def emit(self, *args, **kwargs):
        time.sleep(seconds)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RedisStreamHook, "emit", emit)


def _in_thread(fn, name: str = "cycle") -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread, out


def test_second_cycle_on_the_same_stream_skips_with_a_log_line(
    pg_table, stream, redis_client, monkeypatch, capfd
):
    expected = _seed(pg_table, 300)
    _slow_emits(monkeypatch, 0.15)
    first, out = _in_thread(lambda: run_cycle(pg_table, stream, task_id="dag_a"))
    deadline = time.monotonic() + 10
    while not redis_client.exists(StreamKeys.for_stream(stream).lock) and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(AirflowSkipException):
        run_cycle(pg_table, stream, task_id="dag_b")  # another DAG pointed at the same stream
    first.join()

    assert out["result"]["emitted"] == 300
    text = capfd.readouterr().out
    skip = [line for line in text.splitlines() if "skipping this cycle" in line]
    assert len(skip) == 1 and stream in skip[0] and "holds" in skip[0]
    assert_exactly_once(redis_client, stream, expected)


def test_second_cycle_waits_for_the_first_then_emits_only_what_is_new(
    pg_table, stream, redis_client, monkeypatch
):
    expected = _seed(pg_table, 300)
    _slow_emits(monkeypatch, 0.1)
    first, out = _in_thread(lambda: run_cycle(pg_table, stream))
    while not redis_client.exists(StreamKeys.for_stream(stream).lock):
        time.sleep(0.01)
    second = run_cycle(pg_table, stream, lock_wait=timedelta(seconds=30))
    first.join()
    assert out["result"]["emitted"] == 300
    assert (second["emitted"], second["duplicates"]) == (0, 300)
    assert_exactly_once(redis_client, stream, expected)


def test_lock_of_a_killed_worker_expires_on_its_own(pg_table, stream, redis_client):
    expected = _seed(pg_table, 20)
    lock = StreamKeys.for_stream(stream).lock
    redis_client.set(lock, "dead-worker:1:0", px=700)  # what a SIGKILLed cycle leaves behind
    started = time.monotonic()
    figures = run_cycle(pg_table, stream, lock_wait=timedelta(seconds=10))
    assert time.monotonic() - started >= 0.5
    assert figures["emitted"] == 20
    assert_exactly_once(redis_client, stream, expected)


def test_holder_overrunning_its_lease_cannot_write(pg_table, stream, redis_client, monkeypatch):
    """A pauses past its lease holding a stale read; B takes over; A's next emit and commit are refused."""
    expected = _seed(pg_table, 200)
    paused, resume = threading.Event(), threading.Event()
    real = RedisStreamHook.emit

    def emit(self, *args, **kwargs):  # runs on the cycle's sending thread: A's is known by its lease
        lease = kwargs.get("lease")
        overrunner = lease is not None and lease.lease_ms == 300
        if overrunner and emit.calls == 1:
            paused.set()
            resume.wait(20)
        emit.calls += overrunner
        return real(self, *args, **kwargs)

    emit.calls = 0
    monkeypatch.setattr(RedisStreamHook, "emit", emit)
    # A whole process frozen (SIGSTOP, VM pause, long GC): its lease heartbeat stalls with it.
    monkeypatch.setattr(lease_module.Lease, "keep_alive", lambda self, stop: None)
    sql = pg_table.sql + " ORDER BY id"
    a, out = _in_thread(
        lambda: run_cycle(pg_table, stream, sql=sql, lock_lease=timedelta(milliseconds=300)), "overrunner"
    )
    assert paused.wait(20)
    time.sleep(0.5)  # A's lease runs out while it holds rows 101-200 as they were
    pg_table.execute("UPDATE {table} SET name = 'v2-' || id WHERE id > 150")  # same timestamp tick
    expected = {v for v in expected if int(v[0]) <= 150} | {(str(i), f"v2-{i}") for i in range(151, 201)}
    b = run_cycle(pg_table, stream, sql=sql)
    assert b["emitted"] == 100  # rows 101-200, of which 151-200 in their new content
    committed = watermark(redis_client, stream)
    resume.set()
    a.join()

    assert isinstance(out.get("error"), LockLostError), out
    assert "lock_lease" in str(out["error"])
    assert watermark(redis_client, stream) == committed
    assert_exactly_once(redis_client, stream, expected)
    last = {pkey: name for pkey, name in versions(redis_client, stream)}
    assert all(last[str(i)] == f"v2-{i}" for i in range(151, 201))  # no stale content after the new


def test_fenced_scripts_refuse_a_foreign_token(stream, redis_client, redis_connection, monkeypatch):
    hook = RedisStreamHook(redis_connection)
    keys = StreamKeys.for_stream(stream)
    with lease_module.hold(hook, keys, lease_ms=5000) as lease:
        assert redis_client.get(keys.lock).decode() == lease.token
        foreign = lease_module.Lease(hook, keys, "not-the-holder", 5000)
        with pytest.raises(LockLostError):
            hook.commit(keys, 123, 1, {"last_cycle": "{}"}, foreign)
        with pytest.raises(LockLostError):  # the script's own check (the emit does not renew first)
            hook.emit(keys, "v", None, [Message("1", 5, "d" * 32, b"{}")], lease=foreign)
        with pytest.raises(LockLostError):  # and a renewal before a batch fails fast
            foreign.renewed_at = 0.0
            foreign.renew_if_due()
        assert redis_client.exists(keys.stream, keys.seen, keys.state) == 0
        assert hook.commit(keys, 123, 1, {"last_cycle": "{}"}, lease) == 123
    assert redis_client.exists(keys.lock) == 0
    assert read_stream(redis_client, stream) == []
