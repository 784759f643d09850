"""Both clients of the MySQL provider: mysqlclient (the default, SSCursor) and mysql-connector-python."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from tests.integration.conftest import MYSQL_CONN, read_stream, run_cycle, set_connection

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("client", ["mysqlclient", "mysql-connector-python"])
def test_each_client_streams_a_window_in_batches_with_exact_epochs(
    client, databases, stream, redis_client, monkeypatch
):
    db = databases("mariadb")
    set_connection(monkeypatch, db.conn_id, {**MYSQL_CONN, "extra": {"client": client}})
    table = db.table("id BIGINT PRIMARY KEY, name TEXT, updated_at TIMESTAMP(6) NULL")
    now = db.now()
    stamps = {i: now - timedelta(seconds=i, microseconds=i) for i in range(1, 2501)}
    db.executemany(
        f"INSERT INTO {table} VALUES (%s, %s, %s)",
        [(i, f"c{i}", at.replace(tzinfo=None)) for i, at in stamps.items()],
    )
    sql = f"SELECT id, name, updated_at FROM {table} WHERE updated_at >= %(window_start)s"
    options = dict(sql=sql, source_timezone="Europe/Paris", batch_size=500, snapshot_chunk_size=None)

    assert run_cycle(db, stream, **options)["emitted"] == 2500
    epochs = {int(m["pkey"]): int(m["epoch"]) for m in read_stream(redis_client, stream)}
    assert epochs == {i: datetime_to_us(at, UTC) for i, at in stamps.items()}
    db.execute(f"UPDATE {table} SET name = 'changed', updated_at = UTC_TIMESTAMP(6) WHERE id = 7")
    assert run_cycle(db, stream, **options)["emitted"] == 1
    assert Counter(m["pkey"] for m in read_stream(redis_client, stream))["7"] == 2
