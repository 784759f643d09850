"""The multi-table example: a join whose change time is the greatest of both tables' timestamps."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import read_stream, run_cycle

pytestmark = pytest.mark.integration

EXAMPLE = PROJECT_ROOT / "dags/sql/customers_with_address_changed.sql"
STAMP = {"postgres": "timestamptz", "mariadb": "DATETIME(6)"}


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_an_edit_to_either_table_sends_the_joined_row_once(kind, databases, stream, redis_client):
    db = databases(kind)

    def stamp(at):
        return at if kind == "postgres" else at.replace(tzinfo=None)

    customers = db.table(f"id BIGINT PRIMARY KEY, name TEXT, email TEXT, updated_at {STAMP[kind]} NOT NULL")
    addresses = db.table(
        f"customer_id BIGINT PRIMARY KEY, street TEXT, city TEXT, updated_at {STAMP[kind]} NOT NULL"
    )
    sql = (
        EXAMPLE.read_text()
        .replace("FROM customers AS", f"FROM {customers} AS")
        .replace("JOIN customer_addresses AS", f"JOIN {addresses} AS")
    )
    options = dict(sql=sql, epoch_column="changed_at", lookback=timedelta(minutes=15))
    now = db.now()
    db.executemany(
        f"INSERT INTO {customers} VALUES (%s, %s, %s, %s)",
        [(i, f"c{i}", f"c{i}@example.com", stamp(now - timedelta(minutes=5))) for i in (1, 2, 3)],
    )
    db.executemany(
        f"INSERT INTO {addresses} VALUES (%s, %s, %s, %s)",
        [(i, f"{i} Main St", "Lyon", stamp(now - timedelta(minutes=4))) for i in (1, 2)],
    )

    assert run_cycle(db, stream, **options)["emitted"] == 3  # customer 3 has no address yet
    first = {m["pkey"]: m for m in read_stream(redis_client, stream)}
    assert int(first["1"]["epoch"]) == datetime_to_us(now - timedelta(minutes=4), UTC)  # the address's
    assert int(first["3"]["epoch"]) == datetime_to_us(now - timedelta(minutes=5), UTC)  # its own

    moved = db.now()
    db.execute(
        f"UPDATE {addresses} SET city = 'Paris', updated_at = %s WHERE customer_id = 1", (stamp(moved),)
    )
    assert run_cycle(db, stream, **options)["emitted"] == 1
    last = read_stream(redis_client, stream)[-1]
    assert last["pkey"] == "1" and json.loads(last["payload"])["city"] == "Paris"
    assert int(last["epoch"]) == datetime_to_us(moved, UTC)

    db.execute(f"UPDATE {customers} SET name = 'renamed', updated_at = %s WHERE id = 2", (stamp(db.now()),))
    db.execute(f"INSERT INTO {addresses} VALUES (3, '3 Side St', 'Nice', %s)", (stamp(db.now()),))
    assert run_cycle(db, stream, **options)["emitted"] == 2
    assert run_cycle(db, stream, **options)["emitted"] == 0
    names = [json.loads(m["payload"])["name"] for m in read_stream(redis_client, stream) if m["pkey"] == "2"]
    assert names == ["c2", "renamed"]
