"""Which source a hook gets, the bound each one binds, and the reading loop (on SQLite in memory)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.cycle.sources import MySqlSource, PostgresSource, Source, SqliteSource, _fetch

PARIS = ZoneInfo("Europe/Paris")
AT = datetime_to_us(datetime(2026, 7, 1, 12, 0, 0, 700_000, tzinfo=UTC), UTC)


class Hook:
    def __init__(self, conn_type: str) -> None:
        self.conn_type = conn_type


@pytest.mark.parametrize(
    ("conn_type", "cls"),
    [("postgres", PostgresSource), ("mysql", MySqlSource), ("sqlite", SqliteSource), ("mssql", Source)],
)
def test_each_connection_type_gets_its_source(conn_type, cls):
    assert type(Source.for_hook(Hook(conn_type), UTC, None)) is cls


def test_bounds_in_the_form_each_database_needs():
    pg = PostgresSource(Hook("postgres"), PARIS, None)
    assert pg.bind(AT) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert pg.bind(AT, is_end=True) == datetime(2026, 7, 1, 12, 0, 1, tzinfo=UTC)
    mysql = MySqlSource(Hook("mysql"), PARIS, None)
    assert mysql.bind(AT) == datetime(2026, 7, 1, 14, 0)  # naive, Paris wall clock
    assert mysql.bind(AT, is_end=True) == datetime(2026, 7, 1, 14, 0, 1)
    sqlite = SqliteSource(Hook("sqlite"), PARIS, None)
    assert sqlite.bind(AT) == "2026-07-01 14:00:00"
    assert MySqlSource(Hook("mysql"), UTC, "ms").bind(AT) == AT // 1000
    assert SqliteSource(Hook("sqlite"), UTC, "s").bind(AT, is_end=True) == AT // 1_000_000 + 1


def test_mysql_sql_must_bind_window_start_in_pyformat():
    source = MySqlSource(Hook("mysql"), UTC, None)
    source.check_sql("SELECT * FROM t WHERE updated_at >= %(window_start)s", "s")
    with pytest.raises(DbStreamInputError, match=r"does not bind window_start.*%\(window_start\)s"):
        source.check_sql("SELECT * FROM t WHERE updated_at >= :window_start", "s")


class _CountingCursor:
    """A real sqlite3 cursor that counts its fetchmany calls (each is a round trip on a server)."""

    def __init__(self, cursor):
        self.cursor, self.fetches = cursor, 0

    @property
    def description(self):
        return self.cursor.description

    def fetchmany(self, size):
        self.fetches += 1
        return self.cursor.fetchmany(size)


@pytest.mark.parametrize(("rows", "fetches"), [(250, 3), (200, 3), (0, 1)])
def test_reading_stops_at_a_short_batch_without_another_fetch(rows, fetches):
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    cursor = _CountingCursor(conn.execute("SELECT id FROM t ORDER BY id"))
    batches = list(_fetch(cursor, 100))
    assert [r[0] for _, batch in batches for r in batch] == list(range(rows))
    assert cursor.fetches == fetches  # 250: 100, 100, 50; 200: 100, 100, then the empty one
