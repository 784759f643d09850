"""Hard deletes found by ReconcileDeletesOperator on real Postgres, SQLite and Redis."""

from __future__ import annotations

import json
import tracemalloc
from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import read_stream, run_cycle

pytestmark = pytest.mark.integration


def reconcile(source, stream, **overrides) -> dict:
    from airflow_dbstream.operators.reconcile_deletes import ReconcileDeletesOperator

    kwargs = dict(
        task_id="reconcile",
        sql_conn_id=source.conn_id,
        redis_conn_id="redis_test",
        sql=f"SELECT id FROM {source.name}",
        stream=stream,
        pkey_column="id",
        lookback=timedelta(hours=1),
        variant="customer.v1",
    )
    kwargs.update(overrides)
    return ReconcileDeletesOperator(**kwargs).execute(context={})


def _delete(source, *pkeys: int) -> None:
    ph = source.ph
    for pkey in pkeys:
        source.execute(f"DELETE FROM {{table}} WHERE id = {ph}", (pkey,))


def test_hard_delete_gives_one_tombstone_and_a_reinsert_is_an_upsert_again(source, stream, redis_client):
    old = source.now() - timedelta(hours=3)
    source.insert([(i, f"c{i}", old + timedelta(seconds=i)) for i in range(1, 21)])
    run_cycle(source, stream, track_keys=True)
    assert redis_client.zcard("{" + stream + "}:keys") == 20

    _delete(source, 4, 5, 6)
    figures = reconcile(source, stream)
    assert (figures["keys_scanned"], figures["deleted"], figures["keys_tracked"]) == (17, 3, 17)
    tombstones = [m for m in read_stream(redis_client, stream) if m.get("op") == "delete"]
    assert sorted(m["pkey"] for m in tombstones) == ["4", "5", "6"]
    assert all(m["payload"] == "null" and m["variant"] == "customer.v1" for m in tombstones)
    five = [m for m in read_stream(redis_client, stream) if m["pkey"] == "5"]
    assert int(five[1]["epoch"]) >= int(five[0]["epoch"])  # per key, epochs never go back

    assert reconcile(source, stream)["deleted"] == 0  # a tombstone is never sent twice
    assert run_cycle(source, stream, track_keys=True)["emitted"] == 0

    # Row 5 comes back exactly as it was (same epoch, same content), row 6 comes back changed.
    source.insert([(5, "c5", old + timedelta(seconds=5)), (6, "back", source.now())])
    back = run_cycle(source, stream, track_keys=True, start_from=old)
    assert back["emitted"] == 2
    last = {m["pkey"]: m for m in read_stream(redis_client, stream)}
    assert "op" not in last["5"] and "op" not in last["6"]
    assert json.loads(last["6"]["payload"])["name"] == "back"
    assert reconcile(source, stream)["deleted"] == 0  # they are live again
    _delete(source, 5)
    # The last run saw row 5 present moments ago; a run more than `lookback` later finds it gone.
    assert reconcile(source, stream)["deleted"] == 0
    assert reconcile(source, stream, lookback=timedelta(microseconds=1))["deleted"] == 1
    ops = [m.get("op", "upsert") for m in read_stream(redis_client, stream) if m["pkey"] == "5"]
    assert ops == ["upsert", "delete", "upsert", "delete"]


def test_keys_emitted_within_lookback_of_the_run_wait_for_a_later_run(source, stream, redis_client):
    source.insert([(1, "recent", source.now())])
    run_cycle(source, stream, track_keys=True)
    _delete(source, 1)
    assert reconcile(source, stream)["deleted"] == 0  # might be a row not visible to the scan yet
    assert reconcile(source, stream, lookback=timedelta(microseconds=1))["deleted"] == 1


def test_soft_delete_then_purge_is_one_tombstone(pg_table, stream, redis_client):
    pg_table.execute("ALTER TABLE {table} ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    pg_table.sql = pg_table.sql.replace("updated_at FROM", "updated_at, deleted FROM")
    pg_table.insert(
        [(1, "a", pg_table.now() - timedelta(hours=2)), (2, "b", pg_table.now() - timedelta(hours=2))]
    )
    run_cycle(pg_table, stream, track_keys=True, deleted_column="deleted")
    pg_table.execute("UPDATE {table} SET deleted = true, updated_at = clock_timestamp() WHERE id = 2")
    assert run_cycle(pg_table, stream, track_keys=True, deleted_column="deleted")["deletes"] == 1
    _delete(pg_table, 2)  # purged later
    assert reconcile(pg_table, stream)["deleted"] == 0
    assert [m.get("op") for m in read_stream(redis_client, stream) if m["pkey"] == "2"] == [None, "delete"]


def test_tombstones_wait_for_the_streams_cycle_lock(source, stream, redis_client):
    source.insert([(i, "a", source.now() - timedelta(hours=2)) for i in range(1, 4)])
    run_cycle(source, stream, track_keys=True)
    _delete(source, 2)
    lock = "{" + stream + "}:lock"
    redis_client.set(lock, "another-cycle", px=60_000)
    with pytest.raises(RuntimeError, match="another-cycle"):
        reconcile(source, stream, lock_wait=timedelta(seconds=0.3))
    assert redis_client.xlen(stream) == 3  # nothing sent while a cycle held the stream
    redis_client.delete(lock)
    assert reconcile(source, stream)["deleted"] == 1
    assert redis_client.get(lock) is None  # released


def test_reconcile_refuses_a_stream_that_does_not_track_keys(source, stream, redis_client):
    source.insert([(1, "a", source.now())])
    run_cycle(source, stream)
    with pytest.raises(DbStreamInputError, match="track_keys=True"):
        reconcile(source, stream)


def test_max_deletes_guards_against_an_empty_key_query(source, stream, redis_client):
    source.insert([(i, "a", source.now() - timedelta(hours=2)) for i in range(1, 11)])
    run_cycle(source, stream, track_keys=True)
    with pytest.raises(DbStreamInputError, match="more than max_deletes=5"):
        reconcile(source, stream, sql=f"SELECT id FROM {source.name} WHERE id < 0", max_deletes=5)
    assert redis_client.xlen(stream) == 10


def test_a_null_or_missing_key_gets_the_windows_error_and_no_tombstone(source, stream, redis_client):
    """The key scan checks its rows as a window does: a NULL key names its column and row, a missing
    key column lists the columns returned; either way no key is judged deleted."""
    source.insert([(i, f"c{i}", source.now() - timedelta(hours=2)) for i in range(1, 11)])
    run_cycle(source, stream, track_keys=True)
    null_key = f"SELECT CASE WHEN id = 5 THEN NULL ELSE id END AS id FROM {source.name}"
    with pytest.raises(DbStreamInputError, match=r"column 'id' of row \d+ is NULL; a primary key cannot"):
        reconcile(source, stream, sql=null_key)
    with pytest.raises(DbStreamInputError, match=r"no column 'customer_id'; it returned \['id'\]"):
        reconcile(source, stream, pkey_column="customer_id")
    assert not [m for m in read_stream(redis_client, stream) if m.get("op") == "delete"]


def test_an_empty_key_scan_checks_its_key_columns(source, stream, redis_client):
    source.insert([(1, "c1", source.now() - timedelta(hours=2))])
    run_cycle(source, stream, track_keys=True)
    empty = f"SELECT id FROM {source.name} WHERE id < 0"
    with pytest.raises(DbStreamInputError, match=r"no column 'customer_id'; it returned \['id'\]"):
        reconcile(source, stream, sql=empty, pkey_column="customer_id")
    assert redis_client.xlen(stream) == 1


def test_dead_lettering_reconcile_skips_null_keys_and_counts_them(source, stream, redis_client, capfd):
    """on_bad_row="dead_letter": a NULL key cannot be a tracked key (the stream never emitted one), so the
    scan skips it with a WARNING and judges the other keys as usual; it writes no dead letter (the
    stream's cycle dead-letters the row, with all its values)."""
    source.insert([(i, f"c{i}", source.now() - timedelta(hours=2)) for i in range(1, 11)])
    run_cycle(source, stream, track_keys=True)
    _delete(source, 7)
    null_key = f"SELECT CASE WHEN id IN (3, 5) THEN NULL ELSE id END AS id FROM {source.name}"
    figures = reconcile(source, stream, sql=null_key, on_bad_row="dead_letter", batch_size=4)
    assert (figures["keys_scanned"], figures["bad_keys"]) == (9, 2)
    # 3 and 5 were not found under their keys, 7 is gone: each gets its one tombstone
    tombstones = sorted(m["pkey"] for m in read_stream(redis_client, stream) if m.get("op") == "delete")
    assert tombstones == ["3", "5", "7"]
    assert "2 of 9 rows have a NULL or unencodable key" in "".join(capfd.readouterr())
    assert redis_client.xlen("{" + stream + "}:dead") == 0
    assert reconcile(source, stream)["bad_keys"] == 0


def test_reconcile_over_200k_keys_stays_within_a_memory_bound(source, stream, redis_client):
    n = 200_000
    if source.kind == "postgres":
        source.execute(
            "INSERT INTO {table} SELECT g, 'c', now() - interval '1 day' FROM generate_series(1, %s) g", (n,)
        )
    elif source.kind == "mariadb":
        source.execute(
            f"INSERT INTO {{table}} SELECT seq, 'c', UTC_TIMESTAMP() - INTERVAL 1 DAY FROM seq_1_to_{n}"
        )
    else:
        source.execute(
            "INSERT INTO {table} WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            "SELECT x, 'c', '2026-01-01 00:00:00' FROM g",
            (n,),
        )
    # The keys a stream with track_keys would carry after its snapshot.
    keys = "{" + stream + "}:keys"
    old = 1_700_000_000_000_000
    for start in range(1, n + 1, 20_000):
        redis_client.zadd(keys, {str(i): old for i in range(start, min(start + 20_000, n + 1))})
    redis_client.hset("{" + stream + "}:state", "track_keys", "1")
    # A first run finds every key present (and loads the modules and connections tracemalloc would count).
    assert reconcile(source, stream, batch_size=5000)["deleted"] == 0
    redis_client.zadd(keys, {str(i): old for i in range(n + 1, n + 4)})  # three rows since deleted

    tracemalloc.start()
    try:
        figures = reconcile(source, stream, batch_size=5000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (figures["keys_scanned"], figures["deleted"]) == (n, 3)
    assert sorted(m["pkey"] for m in read_stream(redis_client, stream)) == [
        str(n + 1),
        str(n + 2),
        str(n + 3),
    ]
    assert peak < 8_000_000, f"reconcile of {n} keys peaked at {peak / 1e6:.1f} MB of Python memory"
