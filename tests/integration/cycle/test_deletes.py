"""Soft deletes (deleted_column) on real Postgres, SQLite and Redis: one tombstone, then upserts again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import read_stream, run_cycle

pytestmark = pytest.mark.integration


@pytest.fixture
def soft(source):
    """The customers table with a deleted_at column; the SQL returns it."""
    source.execute(f"ALTER TABLE {{table}} ADD COLUMN deleted_at {source.timestamp_type}")
    source.sql = source.sql.replace("SELECT id, name, updated_at", "SELECT id, name, updated_at, deleted_at")
    return source


def _mark(source, pkey: int, deleted: bool, at) -> None:
    value = source.stamp(at) if deleted else None
    stamp = source.stamp(at)
    ph = source.ph
    source.execute(
        f"UPDATE {{table}} SET deleted_at = {ph}, updated_at = {ph} WHERE id = {ph}", (value, stamp, pkey)
    )


def test_soft_delete_gives_one_tombstone_and_undelete_an_upsert(soft, stream, redis_client):
    now = soft.now()
    soft.insert([(i, f"c{i}", now - timedelta(minutes=10)) for i in range(1, 6)])
    run_cycle(soft, stream, deleted_column="deleted_at")

    _mark(soft, 2, True, soft.now())
    figures = run_cycle(soft, stream, deleted_column="deleted_at")
    assert (figures["emitted"], figures["deletes"]) == (1, 1)
    tombstone = read_stream(redis_client, stream)[-1]
    assert tombstone["op"] == "delete" and tombstone["pkey"] == "2"
    payload = json.loads(tombstone["payload"])
    assert payload["name"] == "c2" and payload["deleted_at"] is not None  # the row's last content

    again = run_cycle(soft, stream, deleted_column="deleted_at")  # re-reads the window: no second one
    assert (again["emitted"], again["deletes"]) == (0, 0)

    _mark(soft, 2, False, soft.now())
    back = run_cycle(soft, stream, deleted_column="deleted_at")
    assert (back["emitted"], back["deletes"]) == (1, 0)
    messages = [m for m in read_stream(redis_client, stream) if m["pkey"] == "2"]
    assert [m.get("op", "upsert") for m in messages] == ["upsert", "delete", "upsert"]
    assert [int(m["epoch"]) for m in messages] == sorted(int(m["epoch"]) for m in messages)


def test_soft_delete_without_touching_the_epoch_is_still_one_tombstone(soft, stream, redis_client):
    at = soft.now() - timedelta(minutes=3)
    soft.insert([(1, "c1", at)])
    run_cycle(soft, stream, deleted_column="deleted_at")
    _mark(soft, 1, True, at)  # same updated_at, new content: a new version at the same epoch
    assert run_cycle(soft, stream, deleted_column="deleted_at")["deletes"] == 1
    assert run_cycle(soft, stream, deleted_column="deleted_at")["emitted"] == 0
    assert [m.get("op") for m in read_stream(redis_client, stream)] == [None, "delete"]


def test_boolean_deleted_column(pg_table, stream, redis_client):
    pg_table.execute("ALTER TABLE {table} ADD COLUMN is_deleted boolean NOT NULL DEFAULT false")
    pg_table.sql = pg_table.sql.replace("updated_at FROM", "updated_at, is_deleted FROM")
    pg_table.insert([(1, "a", pg_table.now()), (2, "b", pg_table.now())])
    pg_table.execute("UPDATE {table} SET is_deleted = true WHERE id = 2")
    run_cycle(pg_table, stream, deleted_column="is_deleted")
    ops = {m["pkey"]: m.get("op") for m in read_stream(redis_client, stream)}
    assert ops == {"1": None, "2": "delete"}


def test_deleted_column_missing_from_the_query(source, stream, redis_client):
    source.insert([(1, "a", source.now())])
    with pytest.raises(DbStreamInputError, match=r"no column 'deleted_at' \(deleted_column\)"):
        run_cycle(source, stream, deleted_column="deleted_at")
    assert redis_client.xlen(stream) == 0


def test_a_replay_sends_soft_deleted_rows_as_deletes(pg_table, stream, redis_client):
    from tests.integration.conftest import make_operator

    pg_table.execute("ALTER TABLE {table} ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    pg_table.sql = pg_table.sql.replace("updated_at FROM", "updated_at, deleted FROM")
    now = pg_table.now()
    pg_table.insert([(1, "a", now - timedelta(minutes=2)), (2, "b", now - timedelta(minutes=1))])
    pg_table.execute("UPDATE {table} SET deleted = true WHERE id = 2")
    operator = make_operator(pg_table, stream, deleted_column="deleted")
    params = {"action": "replay", "replay_from": (now - timedelta(hours=1)).isoformat()}
    assert operator.execute(context={"params": params, "run_id": "r1"})["replayed"] == 2
    ops = {m["pkey"]: m.get("op") for m in read_stream(redis_client, stream)}
    assert ops == {"1": None, "2": "delete"}
