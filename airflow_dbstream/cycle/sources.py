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

Batch = tuple[list[str], Sequence[Sequence[Any]]]


class Source:
    """A generic DB-API source: worker clock, naive bounds, plain cursor with fetchmany."""

    kind = "generic"
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
        if not self.binds(sql, "window_start"):
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
        with closing(self.conn.cursor()) as cursor:
            cursor.execute(sql, parameters)
            yield from _fetch(cursor, batch_size)


class PostgresSource(Source):
    """Server-side (named) cursor, session time zone set to source_timezone, clock_timestamp()."""

    kind = "postgres"
    read_ahead = True
    conn_types = ("postgres", "postgresql")
    named_placeholder = r"%\({name}\)s"
    placeholder_example = "%(window_start)s"

    def open(self) -> None:
        super().open()
        with closing(self.conn.cursor()) as cursor:
            # Naive timestamp columns compare against our bounds in the source's own time zone.
            cursor.execute("SELECT set_config('TimeZone', %s, false)", (str(self.tz),))

    def now_us(self) -> int:
        with closing(self.conn.cursor()) as cursor:
            cursor.execute("SELECT clock_timestamp()")
            (now,) = cursor.fetchone()
        self.conn.commit()
        return datetime_to_us(now, UTC)

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        # Aware: Postgres converts naive columns with the session's TimeZone, dates at its midnight.
        return us_to_datetime(second_bound(epoch_us, is_end=is_end))

    def batches(self, sql: str, parameters: Mapping[str, Any], batch_size: int) -> Iterator[Batch]:
        cursor = self.conn.cursor(name=f"dbstream_{uuid.uuid4().hex}")
        if hasattr(cursor, "itersize"):  # psycopg2
            cursor.itersize = batch_size
        with closing(cursor):
            cursor.execute(sql, parameters)
            yield from _fetch(cursor, batch_size)


class SqliteSource(Source):
    """SQLite steps its cursor lazily; its clock is UTC text, its timestamps usually text."""

    kind = "sqlite"
    conn_types = ("sqlite",)
    named_placeholder = r":{name}\b"
    placeholder_example = ":window_start"

    def now_us(self) -> int:
        with closing(self.conn.cursor()) as cursor:
            cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            (now,) = cursor.fetchone()
        return datetime_to_us(datetime.fromisoformat(now), UTC)

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

    def bind(self, epoch_us: int, *, is_end: bool = False) -> Any:
        if self.epoch_unit is not None:
            return us_to_number(epoch_us, self.epoch_unit, round_up=is_end)
        return us_to_naive_bound(epoch_us, self.tz, is_end=is_end)

    def batches(self, sql: str, parameters: Mapping[str, Any], batch_size: int) -> Iterator[Batch]:
        with closing(self._unbuffered_cursor()) as cursor:
            cursor.execute(sql, parameters)
            yield from _fetch(cursor, batch_size)

    def _unbuffered_cursor(self) -> Any:
        if type(self.conn).__module__.startswith("MySQLdb"):
            from MySQLdb.cursors import SSCursor  # mysqlclient's default cursor loads the whole result

            return self.conn.cursor(SSCursor)
        return self.conn.cursor()  # mysql-connector-python's cursors are unbuffered by default


def _fetch(cursor: Any, batch_size: int) -> Iterator[Batch]:
    rows = cursor.fetchmany(batch_size)
    # Some drivers (psycopg2 named cursors) describe the result only after the first fetch.
    columns = [d[0] for d in cursor.description or ()]
    if not columns:
        raise DbStreamInputError("The SQL returned no result set; it must be a single SELECT.")
    while rows:
        yield columns, rows
        if len(rows) < batch_size:  # DB-API: fewer rows than asked for means none are left
            return
        rows = cursor.fetchmany(batch_size)
