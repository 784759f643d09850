"""The shared cycle scenarios, run unchanged against each Redis deployment: cluster, ACL user, TLS.

Each scenario takes a Postgres table, a Redis target (its admin client and the Airflow connection
id the operator uses) and a fresh stream name, and checks exactly-once per version itself.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.integration.conftest import PostgresTable, run_cycle


@dataclass
class Target:
    """A Redis deployment as the operator reaches it, and an admin client to inspect it."""

    client: Any
    conn_id: str


class Crash(Exception):
    """The worker dies here (as far as the cycle can tell)."""


def messages(client: Any, stream: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _id, f in client.xrange(stream, "-", "+")]


def versions(client: Any, stream: str) -> list[tuple[str, str]]:
    """(pkey, name) of every message in stream order."""
    return [(m["pkey"], json.loads(m["payload"])["name"]) for m in messages(client, stream)]


def assert_exactly_once(client: Any, stream: str, expected: set[tuple[str, str]]) -> None:
    got = versions(client, stream)
    dup = [v for v, n in Counter(got).items() if n > 1]
    assert not dup, f"duplicated versions: {dup[:5]}"
    lost, extra = sorted(expected - set(got)), sorted(set(got) - expected)
    assert not lost and not extra, f"lost {lost[:5]}, extra {extra[:5]}"
    epochs: dict[str, int] = {}
    for m in messages(client, stream):
        assert int(m["epoch"]) >= epochs.get(m["pkey"], -1), f"epoch went back for pkey {m['pkey']}"
        epochs[m["pkey"]] = int(m["epoch"])


def after_each_emit(monkeypatch: pytest.MonkeyPatch, action: Callable[[int], None]) -> None:
    """Run ``action(batch_number)`` right after each emit call returns (1-based)."""
    real = RedisStreamHook.emit
    count = [0]

    def emit(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        count[0] += 1
        action(count[0])
        return result

    monkeypatch.setattr(RedisStreamHook, "emit", emit)


def _rows(table: PostgresTable, n: int, ago: timedelta, start: int = 1, name: str = "v1") -> set:
    at = table.now() - ago
    table.insert([(i, f"{name}-{i}", at + timedelta(milliseconds=i)) for i in range(start, start + n)])
    return {(str(i), f"{name}-{i}") for i in range(start, start + n)}


def snapshot_then_changes(table, target, stream, monkeypatch) -> None:
    expected = _rows(table, 250, timedelta(minutes=5))
    run = lambda **kw: run_cycle(table, stream, redis_conn_id=target.conn_id, **kw)  # noqa: E731
    assert run()["emitted"] == 250
    assert run()["emitted"] == 0
    table.set(7, "v2-7", table.now())
    table.execute("UPDATE {table} SET name = 'v2-9' WHERE id = 9")  # same timestamp tick, new content
    expected |= {("7", "v2-7"), ("9", "v2-9")}
    figures = run()
    assert (figures["emitted"], figures["duplicates"]) == (2, 248)
    assert_exactly_once(target.client, stream, expected)


def crash_mid_cycle_then_rerun(table, target, stream, monkeypatch) -> None:
    expected = _rows(table, 300, timedelta(minutes=5))

    def die(batch: int) -> None:
        if batch == 2:
            raise Crash("worker lost after the second batch")

    after_each_emit(monkeypatch, die)
    with pytest.raises(Crash):
        run_cycle(table, stream, redis_conn_id=target.conn_id, sql=table.sql + " ORDER BY id")
    assert target.client.xlen(stream) == 200
    assert target.client.hget(StreamKeys.for_stream(stream).state, "watermark") is None
    monkeypatch.undo()
    assert run_cycle(table, stream, redis_conn_id=target.conn_id)["emitted"] == 100
    assert_exactly_once(target.client, stream, expected)


def script_flush_mid_cycle(table, target, stream, monkeypatch) -> None:
    expected = _rows(table, 300, timedelta(minutes=5))
    after_each_emit(monkeypatch, lambda batch: target.client.script_flush() if batch in (1, 2) else None)
    figures = run_cycle(table, stream, redis_conn_id=target.conn_id)
    assert (figures["rows_read"], figures["emitted"]) == (300, 300)
    monkeypatch.undo()
    assert_exactly_once(target.client, stream, expected)


def trim_keeps_seen_small(table, target, stream, monkeypatch) -> None:
    expected = _rows(table, 120, timedelta(hours=3), name="old")
    expected |= _rows(table, 30, timedelta(minutes=1), start=1000, name="new")
    run = lambda: run_cycle(table, stream, redis_conn_id=target.conn_id, lookback=timedelta(hours=1))  # noqa: E731
    assert run()["emitted"] == 150
    keys = StreamKeys.for_stream(stream)
    assert target.client.zcard(keys.seen) == 30  # the old ones fell below watermark - lookback
    assert target.client.hlen(keys.digest) == 30
    assert run()["emitted"] == 0
    assert_exactly_once(target.client, stream, expected)


def busy_lock_skips(table, target, stream, monkeypatch) -> None:
    expected = _rows(table, 10, timedelta(minutes=1))
    lock = StreamKeys.for_stream(stream).lock
    target.client.set(lock, "other-worker:42:feedface", px=10_000)
    with pytest.raises(AirflowSkipException):
        run_cycle(table, stream, redis_conn_id=target.conn_id)
    assert target.client.get(lock) == b"other-worker:42:feedface"  # not ours to release
    assert target.client.xlen(stream) == 0
    target.client.delete(lock)
    assert run_cycle(table, stream, redis_conn_id=target.conn_id)["emitted"] == 10
    assert target.client.exists(lock) == 0  # released at the end of the cycle
    assert_exactly_once(target.client, stream, expected)


def dead_letters_then_the_fix(table, target, stream, monkeypatch) -> None:
    """on_bad_row="dead_letter": the bad row goes once to <tag>:dead (the stream's slot, its user's
    keys), the others are emitted; fixed, it is emitted as usual."""
    expected = _rows(table, 20, timedelta(minutes=5))
    table.set(7, "no key", table.now())
    sql = table.sql.replace("SELECT id,", "SELECT CASE WHEN name = 'no key' THEN NULL ELSE id END AS id,")
    run = lambda: run_cycle(table, stream, redis_conn_id=target.conn_id, sql=sql, on_bad_row="dead_letter")  # noqa: E731
    first = run()
    assert (first["emitted"], first["dead_lettered"]) == (19, 1)
    assert run()["dead_lettered"] == 0
    assert target.client.xlen(StreamKeys.for_stream(stream).dead) == 1
    table.set(7, "fixed-7", table.now())
    assert run()["emitted"] == 1
    assert_exactly_once(target.client, stream, (expected - {("7", "v1-7")}) | {("7", "fixed-7")})


SCENARIOS = [
    snapshot_then_changes,
    crash_mid_cycle_then_rerun,
    script_flush_mid_cycle,
    trim_keeps_seen_small,
    busy_lock_skips,
    dead_letters_then_the_fix,
]


def run_all(pg_factory: Callable[[], PostgresTable], target: Target, streams: list[str]) -> int:
    """Every scenario on every stream (suffixed per scenario), each on a fresh table; returns the count."""
    ran = 0
    for stream in streams:
        for scenario in SCENARIOS:
            table = pg_factory()
            try:
                with pytest.MonkeyPatch.context() as mp:
                    scenario(table, target, f"{stream}:{scenario.__name__[:12]}", mp)
            finally:
                table.close()
            ran += 1
    return ran
