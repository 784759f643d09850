"""Fixtures that reach the real servers of this machine: Redis, Postgres and SQLite files.

Connections reach the operator the way they reach it in production: AIRFLOW_CONN_* variables.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import MySQLdb
import psycopg
import pytest
import redis

REDIS_HOST = os.environ.get("DBSTREAM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("DBSTREAM_TEST_REDIS_PORT", "6379"))
PG_DSN = os.environ.get("DBSTREAM_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
MYSQL_ARGS = {
    "host": "127.0.0.1",
    "port": 3306,
    "user": "root",
    "passwd": "",
    "db": "test",
    "autocommit": True,
}

REDIS_CONN = {"conn_type": "redis", "host": REDIS_HOST, "port": REDIS_PORT}
MYSQL_CONN = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": "test"}
PG_CONN = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, spec: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    client.ping()  # no Redis is a failure, never a skip
    return client


@pytest.fixture
def stream(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh stream key per test; its companion keys are removed afterwards."""
    name = f"test:{uuid.uuid4().hex[:12]}"
    yield name
    tag = "{" + name + "}"
    redis_client.delete(
        name, *(f"{tag}:{c}" for c in ("seen", "digest", "state", "lock", "keys", "dead", "dead_seen"))
    )


@pytest.fixture
def new_stream(redis_client: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Fresh stream keys on demand, several per test (``new_stream("orders")``); all removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    names: list[str] = []

    def make(name: str) -> str:
        names.append(f"{prefix}:{name}")
        return names[-1]

    yield make
    from airflow_dbstream.core.keys import StreamKeys

    for name in names:
        keys = StreamKeys.for_stream(name)
        redis_client.delete(keys.stream, keys.seen, keys.digest, keys.state, keys.lock, keys.keys)


@pytest.fixture(autouse=True)
def redis_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, "redis_test", REDIS_CONN)
    return "redis_test"


class SourceTable:
    """A customers-like table on a real source database, with the SQL the operator runs on it."""

    kind: str
    conn_id: str
    sql: str
    ph = "%s"  # the positional placeholder of execute()
    timestamp_type = "timestamptz"  # the type of updated_at

    def param(self, name: str) -> str:
        """How the operator's SQL binds a named parameter on this database."""
        return f":{name}" if self.kind == "sqlite" else f"%({name})s"

    def stamp(self, at: datetime):
        """An aware instant in the form updated_at stores."""
        return at

    def insert(self, rows: list[tuple[int, str, datetime]]) -> None: ...

    def set(self, pkey: int, name: str, updated_at: datetime) -> None: ...

    def now(self) -> datetime: ...

    def close(self) -> None: ...


class PostgresTable(SourceTable):
    kind = "postgres"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = f"customers_{uuid.uuid4().hex[:10]}"
        self.conn_id = "pg_test"
        set_connection(monkeypatch, self.conn_id, PG_CONN)
        self.db = psycopg.connect(PG_DSN, autocommit=True)
        self.db.execute(
            f"CREATE TABLE {self.name} (id bigint PRIMARY KEY, name text NOT NULL, "
            "updated_at timestamptz NOT NULL)"
        )
        self.sql = f"SELECT id, name, updated_at FROM {self.name} WHERE updated_at >= %(window_start)s"
        self.newest_first = self.sql + " ORDER BY updated_at DESC"

    def insert(self, rows):
        with self.db.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.name} (id, name, updated_at) VALUES (%s, %s, %s)", rows)

    def set(self, pkey, name, updated_at):
        self.db.execute(
            f"UPDATE {self.name} SET name = %s, updated_at = %s WHERE id = %s", (name, updated_at, pkey)
        )

    def execute(self, sql: str, params=()) -> None:
        self.db.execute(sql.format(table=self.name), params)

    def now(self):
        return self.db.execute("SELECT clock_timestamp()").fetchone()[0]

    def close(self):
        self.db.execute(f"DROP TABLE IF EXISTS {self.name}")
        self.db.close()


class SqliteTable(SourceTable):
    """SQLite keeps timestamps as UTC text, the way legacy SQLite applications usually do."""

    kind = "sqlite"
    ph = "?"
    timestamp_type = "TEXT"

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.name = "customers"
        self.path = tmp_path / "source.sqlite"
        self.conn_id = "sqlite_test"
        set_connection(monkeypatch, self.conn_id, {"conn_type": "sqlite", "host": str(self.path)})
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )
        self.sql = "SELECT id, name, updated_at FROM customers WHERE updated_at >= :window_start"
        self.newest_first = self.sql + " ORDER BY updated_at DESC"

    @staticmethod
    def _text(value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def stamp(self, at: datetime) -> str:
        return self._text(at)

    def insert(self, rows):
        self.db.executemany(
            "INSERT INTO customers (id, name, updated_at) VALUES (?, ?, ?)",
            [(i, n, self._text(t)) for i, n, t in rows],
        )

    def set(self, pkey, name, updated_at):
        self.db.execute(
            "UPDATE customers SET name = ?, updated_at = ? WHERE id = ?", (name, self._text(updated_at), pkey)
        )

    def execute(self, sql: str, params=()) -> None:
        self.db.execute(sql.format(table=self.name), params)

    def now(self):
        return datetime.now(UTC)

    def close(self):
        self.db.close()


class MariaDbTable(SourceTable):
    """MariaDB through apache-airflow-providers-mysql; DATETIME(6) holding UTC wall-clock time."""

    kind = "mariadb"
    timestamp_type = "DATETIME(6)"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = f"customers_{uuid.uuid4().hex[:10]}"
        self.conn_id = "mysql_test"
        set_connection(monkeypatch, self.conn_id, MYSQL_CONN)
        self.db = MySQLdb.connect(**MYSQL_ARGS)
        self.execute(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
            "updated_at DATETIME(6) NOT NULL)"
        )
        self.sql = f"SELECT id, name, updated_at FROM {self.name} WHERE updated_at >= %(window_start)s"
        self.newest_first = self.sql + " ORDER BY updated_at DESC"

    @staticmethod
    def _naive(value: datetime) -> datetime:
        return value.astimezone(UTC).replace(tzinfo=None)

    def stamp(self, at: datetime) -> datetime:
        return self._naive(at)

    def insert(self, rows):
        with self.db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.name} (id, name, updated_at) VALUES (%s, %s, %s)",
                [(i, n, self._naive(t)) for i, n, t in rows],
            )

    def set(self, pkey, name, updated_at):
        self.execute(
            "UPDATE {table} SET name = %s, updated_at = %s WHERE id = %s",
            (name, self._naive(updated_at), pkey),
        )

    def execute(self, sql: str, params=None) -> None:
        with self.db.cursor() as cur:
            cur.execute(sql.format(table=self.name), params)

    def now(self):
        with self.db.cursor() as cur:
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            return cur.fetchone()[0].replace(tzinfo=UTC)

    def close(self):
        self.execute("DROP TABLE IF EXISTS {table}")
        self.db.close()


def make_source_table(kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SourceTable:
    if kind == "postgres":
        return PostgresTable(monkeypatch)
    if kind == "mariadb":
        return MariaDbTable(monkeypatch)
    return SqliteTable(monkeypatch, tmp_path)


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def source(request, monkeypatch, tmp_path) -> Iterator[SourceTable]:
    table = make_source_table(request.param, monkeypatch, tmp_path)
    yield table
    table.close()


@pytest.fixture
def pg_table(monkeypatch) -> Iterator[PostgresTable]:
    table = PostgresTable(monkeypatch)
    yield table
    table.close()


def make_operator(source: SourceTable, stream: str, **overrides):
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    kwargs = dict(
        task_id="cycle",
        sql_conn_id=source.conn_id,
        redis_conn_id="redis_test",
        sql=source.sql,
        stream=stream,
        pkey_column="id",
        epoch_column="updated_at",
        lookback=timedelta(hours=1),
        variant="customer.v1",
        batch_size=100,
    )
    kwargs.update(overrides)
    return SqlToRedisStreamOperator(**kwargs)


def run_cycle(source: SourceTable, stream: str, **overrides) -> dict:
    return make_operator(source, stream, **overrides).execute(context={})


def read_stream(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _id, fields in client.xrange(stream, "-", "+")
    ]


def read_dead(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """The stream's dead letters (on_bad_row="dead_letter"), oldest first."""
    return read_stream(client, "{" + stream + "}:dead")


def watermark(client: redis.Redis, stream: str) -> int | None:
    value = client.hget("{" + stream + "}:state", "watermark")
    return int(value) if value else None


class Database:
    """A real source database for tests that create their own tables (any columns, any types)."""

    sql = ""  # each test passes its own

    def __init__(self, kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.kind = kind
        self.tables: list[str] = []
        if kind == "postgres":
            self.conn_id, spec = "pg_test", PG_CONN
            self.db = psycopg.connect(PG_DSN, autocommit=True)
        elif kind == "mariadb":
            self.conn_id, spec = "mysql_test", MYSQL_CONN
            self.db = MySQLdb.connect(**MYSQL_ARGS, charset="utf8mb4")
        else:
            path = self.path = tmp_path / f"{uuid.uuid4().hex[:8]}.sqlite"
            self.conn_id, spec = "sqlite_test", {"conn_type": "sqlite", "host": str(path)}
            self.db = sqlite3.connect(path, isolation_level=None)
        set_connection(monkeypatch, self.conn_id, spec)

    def param(self, name: str) -> str:
        """How the operator's SQL binds a named parameter on this database."""
        return f":{name}" if self.kind == "sqlite" else f"%({name})s"

    def table(self, columns: str, suffix: str = "") -> str:
        name = f"t_{uuid.uuid4().hex[:10]}{suffix}"
        options = " DEFAULT CHARSET=utf8mb4" if self.kind == "mariadb" else ""
        self.execute(f"CREATE TABLE {name} ({columns}){options}")
        self.tables.append(name)
        return name

    def execute(self, sql: str, params=None) -> list[tuple]:
        """Runs one statement with positional %s parameters; returns its rows, if any."""
        if self.kind == "sqlite":
            cursor = self.db.execute(sql.replace("%s", "?"), params or ())
            return cursor.fetchall()
        cursor = self.db.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def executemany(self, sql: str, rows: list) -> None:
        if self.kind == "sqlite":
            self.db.executemany(sql.replace("%s", "?"), rows)
            return
        cursor = self.db.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    def now(self) -> datetime:
        """The database's own clock, UTC."""
        if self.kind == "postgres":
            return self.execute("SELECT clock_timestamp()")[0][0].astimezone(UTC)
        if self.kind == "mariadb":
            return self.execute("SELECT UTC_TIMESTAMP(6)")[0][0].replace(tzinfo=UTC)
        (text,) = self.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")[0]
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    def close(self) -> None:
        for name in self.tables:
            self.execute(f"DROP TABLE IF EXISTS {name}")
        self.db.close()


@pytest.fixture
def databases(monkeypatch, tmp_path) -> Iterator:
    """databases(kind) opens a Database of that kind; all are dropped and closed afterwards."""
    opened: list[Database] = []

    def open_database(kind: str) -> Database:
        opened.append(Database(kind, monkeypatch, tmp_path))
        return opened[-1]

    yield open_database
    for database in opened:
        database.close()


@pytest.fixture
def own_redis(tmp_path):
    """Start redis-servers of this test's own (AOF, TLS, ACL, maxmemory...) on free ports; stopped after."""
    from tests.integration.redis_servers import RedisServer

    started: list[RedisServer] = []

    def start(*args: str, **kwargs) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", *args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """A real 3-master Redis Cluster on loopback, shared by one test module."""
    from tests.integration.redis_servers import RedisClusterServers

    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
