"""examples/consumer.py against a stream the operators wrote: the view equals the source's live rows."""

from __future__ import annotations

import importlib.util
from datetime import timedelta

import pytest
import redis

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import REDIS_HOST, REDIS_PORT, run_cycle
from tests.integration.operators.test_reconcile import reconcile

pytestmark = pytest.mark.integration


def _consumer_module():
    spec = importlib.util.spec_from_file_location("dbstream_consumer", PROJECT_ROOT / "examples/consumer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_consumer_group_view_follows_upserts_soft_and_hard_deletes(pg_table, stream):
    consumer = _consumer_module()
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    pg_table.execute("ALTER TABLE {table} ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    pg_table.sql = pg_table.sql.replace("updated_at FROM", "updated_at, deleted FROM")
    options = dict(deleted_column="deleted", track_keys=True)
    old = pg_table.now() - timedelta(hours=3)
    pg_table.insert([(i, f"c{i}", old + timedelta(seconds=i)) for i in range(1, 11)])
    run_cycle(pg_table, stream, **options)

    view: dict = {}
    assert consumer.consume(client, stream, "view", "a", view, block_ms=10, until_idle=True) == 10
    pg_table.set(1, "renamed", pg_table.now())
    pg_table.execute("UPDATE {table} SET deleted = true, updated_at = clock_timestamp() WHERE id = 2")
    pg_table.execute("DELETE FROM {table} WHERE id = 3")
    run_cycle(pg_table, stream, **options)
    reconcile(pg_table, stream)
    assert consumer.consume(client, stream, "view", "a", view, block_ms=10, until_idle=True) == 3

    live = {str(i) for i in range(1, 11)} - {"2", "3"}
    assert set(view) == live and view["1"]["name"] == "renamed"
    assert client.xpending(stream, "view")["pending"] == 0
