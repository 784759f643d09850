"""What differs between source databases: the clock, the window's bound form, the streaming cursor.

A source wraps a DbApiHook's DB-API connection; it imports no Airflow module, and a driver module only
where its streaming cursor class must be named (mysqlclient's SSCursor).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, suppress
from datetime import UTC, datetime, tzinfo
from typing import Any

from airflow_dbstream.core.encoding import JsonText
from airflow_dbstream.core.epoch import (
    UTC_NAMES,
    bound_slack_us,
    datetime_to_us,
    naive_to_text,
    second_bound,
    us_to_datetime,
    us_to_naive_bound,
    us_to_number,
)
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.guard import BLIND, OFF, ON, SINGLE_WRITER, OpenTransactions
from airflow_dbstream.core.sqltext import without_comments

Batch = tuple[list[str], Sequence[Sequence[Any]]]

# The clock and the oldest other client transaction of this database (and the prepared ones): one query.
PG_OPEN_TRANSACTIONS = """
SELECT clock_timestamp(), pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'), current_user,
       o.xact_start, o.pid, o.usename, o.application_name, o.state, p.gid, p.prepared
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT xact_start, pid, usename, application_name, state FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
      AND xact_start IS NOT NULL
    ORDER BY xact_start LIMIT 1
) AS o ON true
LEFT JOIN LATERAL (
    SELECT gid, prepared FROM pg_prepared_xacts WHERE database = current_database() ORDER BY prepared LIMIT 1
) AS p ON true
"""
# The clock and the oldest other transaction that changed rows or runs a statement (InnoDB, server-wide).
MYSQL_OPEN_TRANSACTIONS = """
SELECT UTC_TIMESTAMP(6), UNIX_TIMESTAMP(o.trx_started),
       CONCAT('thread ', o.trx_mysql_thread_id, ' (user ', COALESCE(p.USER, '?'), '@', COALESCE(p.HOST, '?'),
              ', ', o.trx_rows_modified, ' rows changed, ', IF(o.trx_query IS NULL, 'idle', 'running'), ')')
FROM (SELECT 1) AS one
LEFT JOIN (
    SELECT trx_started, trx_mysql_thread_id, trx_rows_modified, trx_query FROM information_schema.innodb_trx
    WHERE trx_mysql_thread_id <> CONNECTION_ID() AND (trx_rows_modified > 0 OR trx_query IS NOT NULL)
    ORDER BY trx_started LIMIT 1
) AS o ON true
LEFT JOIN information_schema.PROCESSLIST AS p ON p.ID = o.trx_mysql_thread_id
"""


class Source:
    """A generic DB-API source: worker clock, naive bounds, plain cursor with fetchmany."""

    kind = "generic"
    shows_transactions = False  # whether the guard is on by default (transaction_guard=None)
    read_ahead = False  # whether the next batch may be fetched on another thread while this one is encoded
    named_placeholder = r"(%\({name}\)s|:{name}\b)"
    placeholder_example = "%(window_start)s or :window_start"
    identifier_quote = '"'  # how the snapshot quotes result column names (MySQL: backtick)

    def __init__(self, hook: Any, tz: tzinfo, epoch_unit: str | None) -> None:
        self.hook = hook
        self.tz = tz
        self.epoch_unit = epoch_unit
        self.conn: Any = None

    @staticmethod
    def for_hook(hook: Any, tz: tzinfo, epoch_unit: str | None) -> Source:
        conn_type = getattr(hook, "conn_type", "") or ""
        for cls in (PostgresSource, MySqlSource, SqliteSource):
            if conn_type in cls.conn_types:
                return cls(hook, tz, epoch_unit)
        return Source(hook, tz, epoch_unit)

    conn_types: tuple[str, ...] = ()

    def binds(self, sql: str, name: str) -> bool:
        return re.search(self.named_placeholder.format(name=re.escape(name)), sql) is not None

    def check_sql(self, sql: str, stream: str) -> None:
        if not self.binds(without_comments(sql, self.kind), "window_start"):  # not in a comment only
            raise DbStreamInputError(
                f"Stream {stream!r}: the SQL does not bind window_start, so every cycle would read the "
                f"whole table. Filter on the epoch column with {self.placeholder_example}, e.g. "
                f"WHERE updated_at >= {self.placeholder_example.split(' or ')[0]}."
            )

    def open(self) -> None:
        self.conn = self.hook.get_conn()

    def close(self) -> None:
        if self.conn is not None:
            with suppress(Exception):
                self.conn.rollback()
            self.conn.close()
            self.conn = None

    def end_chunk(self) -> None:
        """End the read transaction of one snapshot chunk, so no snapshot is held for hours."""
        with suppress(Exception):
            self.conn.rollback()

    def now_us(self) -> int:
        """The source's own clock; the generic source can only use the worker's."""
        return time.time_ns() // 1000

    def clock(self, guard: bool | None) -> tuple[int, OpenTransactions]:
        """The source's clock and, with the guard on (None: where the source shows them), its other
        sessions' open transactions at that instant, in one round trip where the database allows."""
        if guard is False or (guard is None and not self.shows_transactions):
            return self.now_us(), OpenTransactions(OFF)
        return self.guarded_clock()

    def guarded_clock(self) -> tuple[int, OpenTransactions]:
        return self.now_us(), OpenTransactions(OFF)  # a generic DB-API source shows no transactions

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        return us_to_naive_bound(epoch_us, self.tz, is_end=is_end)

    def window_params(self, parameters: Mapping[str, Any], start_us: int, end_us: int) -> dict[str, Any]:
        """The author's parameters plus the window's two bounds: the one place a window is bound."""
        return {
            **parameters,
            "window_start": self.bind(start_us),
            "window_end": self.bind(end_us, is_end=True),
        }

    def bound_slack_us(self, start_us: int) -> int:
        """How far below a window's start the rows its bound returns can be stamped."""
        return bound_slack_us(start_us, self.tz, self.epoch_unit)

    def batches(self, sql: str, parameters: Mapping[str, Any], batch_size: int) -> Iterator[Batch]:
        with closing(self.streaming_cursor(batch_size)) as cursor:
            cursor.execute(sql, parameters)
            yield from _fetch(cursor, batch_size)

    def columns(self, sql: str, parameters: Mapping[str, Any]) -> list[str]:
        """The names of the columns the SQL returns, as ``batches`` reads them, fetching one row at most."""
        with closing(self.streaming_cursor(1)) as cursor:
            cursor.execute(sql, parameters)
            cursor.fetchmany(1)  # some drivers (psycopg2 named cursors) describe the result only now
            return _columns(cursor)

    def streaming_cursor(self, batch_size: int) -> Any:
        """A cursor that fetches rows as they are asked for, with bounded memory."""
        return self.conn.cursor()


class PostgresSource(Source):
    """Server-side (named) cursor, session time zone set to source_timezone, clock_timestamp()."""

    kind = "postgres"
    shows_transactions = True
    read_ahead = True
    conn_types = ("postgres", "postgresql")
    named_placeholder = r"%\({name}\)s"
    placeholder_example = "%(window_start)s"

    def open(self) -> None:
        super().open()
        json_as_text(self.conn)
        with closing(self.conn.cursor()) as cursor:
            # Naive timestamp columns compare against our bounds in the source's own time zone.
            cursor.execute("SELECT set_config('TimeZone', %s, false)", (str(self.tz),))

    def now_us(self) -> int:
        with closing(self.conn.cursor()) as cursor:
            cursor.execute("SELECT clock_timestamp()")
            (now,) = cursor.fetchone()
        self.conn.commit()
        return datetime_to_us(now, UTC)

    def guarded_clock(self) -> tuple[int, OpenTransactions]:
        """Every open transaction counts: now() is the transaction's start, so one that has only read
        so far can still write rows stamped then. Prepared ones show no start: they keep the window."""
        with closing(self.conn.cursor()) as cursor:
            cursor.execute(PG_OPEN_TRANSACTIONS)
            now, sees_all, user, start, pid, login, app, state, prepared_gid, prepared_at = cursor.fetchone()
        self.conn.commit()
        if not sees_all:
            return datetime_to_us(now, UTC), OpenTransactions(
                BLIND, grant=f'GRANT pg_read_all_stats TO "{user}";'
            )
        holder = None
        if start is not None:
            holder = f"pid {pid} (user {login!r}, application {app or ''!r}, {state})"
        elif prepared_gid is not None:
            holder = f"prepared transaction {prepared_gid!r} (prepared at {prepared_at.isoformat()})"
        return datetime_to_us(now, UTC), OpenTransactions(
            ON,
            oldest_start_us=None if start is None else datetime_to_us(start, UTC),
            start_unknown=prepared_gid is not None,
            holder=holder,
        )

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        # Aware: Postgres converts naive columns with the session's TimeZone, dates at its midnight.
        return us_to_datetime(second_bound(epoch_us, is_end=is_end))

    def streaming_cursor(self, batch_size: int) -> Any:
        cursor = self.conn.cursor(name=f"dbstream_{uuid.uuid4().hex}")
        if hasattr(cursor, "itersize"):  # psycopg2
            cursor.itersize = batch_size
        return cursor


def json_as_text(conn: Any) -> None:
    """json and jsonb values arrive as their text (JsonText), which payloads embed as it is: the driver
    neither parses them nor do we encode them again (Postgres checked that the text is valid JSON)."""
    if type(conn).__module__.startswith("psycopg2"):
        from psycopg2.extras import register_default_json, register_default_jsonb

        for register in (register_default_json, register_default_jsonb):
            register(conn, loads=lambda text: JsonText(text.encode()))
        return
    from psycopg.adapt import Loader

    class TextLoader(Loader):
        def load(self, data: Any) -> JsonText:
            return JsonText(data)

    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)


class SqliteSource(Source):
    """SQLite steps its cursor lazily; its clock is UTC text, its timestamps usually text."""

    kind = "sqlite"
    shows_transactions = True  # in its own way: see guarded_clock
    conn_types = ("sqlite",)
    named_placeholder = r":{name}\b"
    placeholder_example = ":window_start"

    def now_us(self) -> int:
        with closing(self.conn.cursor()) as cursor:
            cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            (now,) = cursor.fetchone()
        return datetime_to_us(datetime.fromisoformat(now), UTC)

    def guarded_clock(self) -> tuple[int, OpenTransactions]:
        """SQLite lets one writer at a time commit, so while a write transaction is open nothing newer
        than its first write commits: the watermark cannot pass the rows it stamps (by the database's
        clock). Nothing to hold; lookback covers the applications' own clocks."""
        return self.now_us(), OpenTransactions(SINGLE_WRITER)

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        return naive_to_text(us_to_naive_bound(epoch_us, self.tz, is_end=is_end))


class MySqlSource(Source):
    """MySQL/MariaDB: an unbuffered cursor, the session time_zone set to source_timezone, UTC_TIMESTAMP(6).

    DATETIME columns are naive: bounds are naive wall-clock times in source_timezone. TIMESTAMP columns
    are converted by the server to and from the session's time_zone, which open() sets to the same zone,
    so both kinds compare against the same bounds and read back in the same zone.
    """

    kind = "mysql"
    shows_transactions = True
    conn_types = ("mysql",)
    named_placeholder = r"%\({name}\)s"
    placeholder_example = "%(window_start)s"
    identifier_quote = "`"

    def open(self) -> None:
        super().open()
        name = str(self.tz)
        zone = "+00:00" if name in UTC_NAMES else name
        with closing(self.conn.cursor()) as cursor:
            try:
                cursor.execute("SET time_zone = %s", (zone,))
            except Exception as exc:
                if "time zone" not in str(exc).lower():
                    raise
                raise DbStreamInputError(
                    f"The MySQL/MariaDB server does not know the time zone {name!r} (source_timezone): "
                    "load its time zone tables (mariadb-tzinfo-to-sql /usr/share/zoneinfo | mariadb mysql) "
                    "or, if the column holds UTC, use source_timezone='UTC'."
                ) from None

    def now_us(self) -> int:
        with closing(self.conn.cursor()) as cursor:
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            (now,) = cursor.fetchone()
        return datetime_to_us(now, UTC)

    def guarded_clock(self) -> tuple[int, OpenTransactions]:
        """NOW() is the statement's start: only transactions that have changed rows, or are running a
        statement, can still commit rows stamped before now (whole seconds, floored)."""
        with closing(self.conn.cursor()) as cursor:
            try:
                cursor.execute(MYSQL_OPEN_TRANSACTIONS)
            except Exception as exc:
                if 1227 not in (getattr(exc, "errno", None), *(exc.args[:1] or ())):
                    raise  # not "Access denied; you need the PROCESS privilege"
                cursor.execute("SELECT UTC_TIMESTAMP(6), CURRENT_USER()")
                now, user = cursor.fetchone()
                name, _, host = str(user).partition("@")
                return datetime_to_us(now, UTC), OpenTransactions(
                    BLIND, grant=f"GRANT PROCESS ON *.* TO '{name}'@'{host}';"
                )
            now, start_s, holder = cursor.fetchone()
        oldest_us = None if start_s is None else int(start_s) * 1_000_000
        return datetime_to_us(now, UTC), OpenTransactions(ON, oldest_start_us=oldest_us, holder=holder)

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        return us_to_naive_bound(epoch_us, self.tz, is_end=is_end)

    def streaming_cursor(self, batch_size: int) -> Any:
        if type(self.conn).__module__.startswith("MySQLdb"):
            from MySQLdb.cursors import SSCursor  # mysqlclient's default cursor loads the whole result

            return self.conn.cursor(SSCursor)
        return self.conn.cursor()  # mysql-connector-python's cursors are unbuffered by default


def _fetch(cursor: Any, batch_size: int) -> Iterator[Batch]:
    """The result's batches; an empty result yields its columns with no row, once, so that what reads
    it checks the columns of an empty window as it checks those of a full one."""
    rows = cursor.fetchmany(batch_size)
    # Some drivers (psycopg2 named cursors) describe the result only after the first fetch.
    columns = _columns(cursor)
    if not rows:
        yield columns, rows
        return
    while rows:
        yield columns, rows
        if len(rows) < batch_size:  # DB-API: fewer rows than asked for means none are left
            return
        rows = cursor.fetchmany(batch_size)


def _columns(cursor: Any) -> list[str]:
    columns = [d[0] for d in cursor.description or ()]
    if not columns:
        raise DbStreamInputError("The SQL returned no result set; it must be a single SELECT.")
    return columns
