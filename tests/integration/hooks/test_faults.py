"""Faults injected for real mid-cycle, each followed by a rerun that emits exactly what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_dbstream.core.errors import DbStreamRedisError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks import faults
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import run_cycle, set_connection
from tests.integration.hooks.scenarios import after_each_emit, assert_exactly_once

pytestmark = pytest.mark.integration


def _seed(table, n: int, start: int = 1) -> set[tuple[str, str]]:
    at = table.now() - timedelta(minutes=5)
    table.insert([(i, f"v1-{i}", at + timedelta(milliseconds=i)) for i in range(start, start + n)])
    return {(str(i), f"v1-{i}") for i in range(start, start + n)}


def _state(client, stream: str) -> bytes | None:
    return client.hget(StreamKeys.for_stream(stream).state, "watermark")


@pytest.fixture
def aof_redis(own_redis, monkeypatch):
    """A Redis of this test's own with AOF fsynced on every write, reached as `redis_own`."""
    server = own_redis("--appendonly", "yes", "--appendfsync", "always")
    set_connection(monkeypatch, "redis_own", server.connection())
    return server


def test_redis_killed_and_restarted_mid_cycle_the_cycle_retries_and_completes(
    pg_table, aof_redis, monkeypatch
):
    stream = "faults:restart"
    expected = _seed(pg_table, 400)

    def kill_and_restart(batch: int) -> None:
        if batch == 1:
            aof_redis.kill()
            threading.Timer(0.5, aof_redis.start).start()

    with pytest.MonkeyPatch.context() as mp:
        after_each_emit(mp, kill_and_restart)
        figures = run_cycle(pg_table, stream, redis_conn_id="redis_own", sql=pg_table.sql + " ORDER BY id")
    client = aof_redis.admin()
    assert figures["rows_read"] == 400
    assert figures["emitted"] + figures["duplicates"] == 400
    assert _state(client, stream) is not None
    assert run_cycle(pg_table, stream, redis_conn_id="redis_own")["emitted"] == 0
    assert_exactly_once(client, stream, expected)


def test_redis_down_longer_than_the_retries_fails_then_rerun_emits_the_rest(pg_table, aof_redis, monkeypatch):
    stream = "faults:outage"
    expected = _seed(pg_table, 300)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(faults, "RETRIES", 0)
        after_each_emit(mp, lambda batch: aof_redis.kill() if batch == 1 else None)
        with pytest.raises(DbStreamRedisError, match="did not answer"):
            run_cycle(
                pg_table, stream, redis_conn_id="redis_own", sql=pg_table.sql + " ORDER BY id",
                lock_lease=timedelta(seconds=3),
            )  # fmt: skip
    aof_redis.start()
    client = aof_redis.admin()
    assert client.xlen(stream) == 100  # the first batch survived SIGKILL through the AOF
    assert _state(client, stream) is None
    assert client.exists(StreamKeys.for_stream(stream).lock)  # could not be released, kept by the AOF
    figures = run_cycle(pg_table, stream, redis_conn_id="redis_own", lock_wait=timedelta(seconds=10))
    assert (figures["emitted"], figures["duplicates"]) == (200, 100)
    assert_exactly_once(client, stream, expected)


def test_source_connection_killed_mid_read_then_rerun(pg_table, stream, redis_client, monkeypatch, capfd):
    # 20 batches of 100: the read-ahead thread is at most a few batches ahead when the backend dies.
    expected = _seed(pg_table, 2000)

    def terminate_source(batch: int) -> None:
        if batch == 1:
            pids = pg_table.db.execute(
                "SELECT pid FROM pg_locks WHERE relation = %s::regclass AND pid <> pg_backend_pid()",
                (pg_table.name,),
            ).fetchall()
            assert pids, "the cycle's backend holds no lock on the table"
            for (pid,) in pids:
                pg_table.db.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with pytest.MonkeyPatch.context() as mp:
        after_each_emit(mp, terminate_source)
        with pytest.raises(Exception, match="terminat") as failure:
            run_cycle(pg_table, stream, sql=pg_table.sql + " ORDER BY id")
    assert not isinstance(failure.value, AirflowFailException)  # a transient fault keeps Airflow's retries
    sent = redis_client.xlen(stream)  # the batches read before the backend died are sent, in order
    out, err = capfd.readouterr()
    failed = [line for line in (out + err).splitlines() if "the cycle failed after reading" in line]
    assert len(failed) == 1 and f"appending {sent} messages" in failed[0], failed
    assert "[error" in failed[0] and "clearing this task re-reads the same window" in failed[0]
    assert 100 <= sent < 2000 and sent % 100 == 0
    assert _state(redis_client, stream) is None
    assert not redis_client.exists(StreamKeys.for_stream(stream).lock)  # released on the way out
    figures = run_cycle(pg_table, stream, sql=pg_table.sql + " ORDER BY id")
    assert (figures["emitted"], figures["duplicates"]) == (2000 - sent, sent)
    assert_exactly_once(redis_client, stream, expected)


def test_redis_at_maxmemory_fails_fast_naming_maxmemory_and_maxlen(pg_table, own_redis, monkeypatch):
    server = own_redis()
    set_connection(monkeypatch, "redis_own", server.connection())
    stream = "faults:oom"
    expected = _seed(pg_table, 50)
    run_cycle(pg_table, stream, redis_conn_id="redis_own")
    client = server.admin()
    committed = _state(client, stream)
    expected |= _seed(pg_table, 50, start=1000)
    client.config_set("maxmemory", 1)  # far below what the server uses: every first write is refused

    started = time.monotonic()
    with pytest.raises(DbStreamRedisError) as failure:
        run_cycle(pg_table, stream, redis_conn_id="redis_own")
    assert time.monotonic() - started < 3  # permanent: no retries
    message = str(failure.value)
    assert "maxmemory" in message and "`maxlen`" in message and stream in message
    assert client.xlen(stream) == 50 and _state(client, stream) == committed
    assert not client.exists(StreamKeys.for_stream(stream).lock)

    client.config_set("maxmemory", 0)
    figures = run_cycle(pg_table, stream, redis_conn_id="redis_own")
    assert (figures["emitted"], figures["duplicates"]) == (50, 50)
    assert_exactly_once(client, stream, expected)


CHILD = """
import json, sys, time
from datetime import timedelta
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.integration.conftest import make_operator, PostgresTable

spec = json.loads(sys.argv[1])
real = RedisStreamHook.emit
def emit(self, *args, **kwargs):
    result = real(self, *args, **kwargs)
    print("batch", flush=True)
    time.sleep(0.3)
    return result
RedisStreamHook.emit = emit
table = PostgresTable.__new__(PostgresTable)
table.conn_id, table.sql = "pg_test", spec["sql"]
make_operator(table, spec["stream"], lock_lease=timedelta(seconds=1.5)).execute(context={})
print("done", flush=True)
"""


def test_task_process_sigkilled_between_batches_then_rerun(pg_table, stream, redis_client):
    expected = _seed(pg_table, 500)
    sql = pg_table.sql + " ORDER BY id"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps({"sql": sql, "stream": stream})],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    batches = 0
    while batches < 2:
        line = child.stdout.readline()
        assert line, "the child cycle ended before its second batch"
        batches += line.startswith("batch")
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert redis_client.xlen(stream) == 200
    assert redis_client.exists(StreamKeys.for_stream(stream).lock)  # left behind by the killed worker
    assert _state(redis_client, stream) is None

    figures = run_cycle(pg_table, stream, lock_wait=timedelta(seconds=10))  # waits for the lease to run out
    assert (figures["emitted"], figures["duplicates"]) == (300, 200)
    assert_exactly_once(redis_client, stream, expected)
