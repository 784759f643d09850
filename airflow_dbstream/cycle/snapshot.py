"""The first load of a big table: chunks in (epoch, pkey) order, progress kept in ``<tag>:state``.

A crash or a killed task resumes after the last chunk committed; the chunk that was running is read
again and its rows already emitted are duplicates to ``seen``. The watermark is committed only when
the whole table is covered, and never past the database's clock at the snapshot's start, so the first
normal cycle re-reads everything changed while the snapshot ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_dbstream.core.epoch import SNAPSHOT_START_US
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.keyset import chunk_sql, count_sql, cursor_params, dump_cursor, load_cursor
from airflow_dbstream.core.window import trim_cutoff
from airflow_dbstream.cycle.pipeline import BatchEmitter, QueryTotals
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks.redis_stream import RedisStreamHook, StreamState

STARTED, CURSOR, CURSOR_US, ROWS, TOTAL = (
    "snapshot_started",
    "snapshot_cursor",
    "snapshot_cursor_us",
    "snapshot_rows",
    "snapshot_total",
)
FIELDS = (STARTED, CURSOR, CURSOR_US, ROWS, TOTAL)


@dataclass(frozen=True)
class SnapshotResult:
    started_us: int  # the database's clock when the snapshot began: the window's end
    max_epoch_us: int | None  # the last (highest) epoch covered, before and after any resume
    rows_read: int  # in this run
    emitted: int
    duplicates: int
    deletes: int
    resumed_at_rows: int


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress(done: int, total: int | None, run_rows: int, run_seconds: float) -> tuple[float, float | None]:
    """Rows per second in this run and the seconds left at that rate (None when not known)."""
    rate = run_rows / run_seconds if run_seconds > 0 else 0.0
    if total is None or rate <= 0:
        return rate, None
    return rate, max(total - done, 0) / rate


class Snapshot:
    """Reads the author's SQL in keyset chunks; see keyset.py for how the SQL is wrapped."""

    def __init__(
        self,
        *,
        source: Source,
        redis: RedisStreamHook,
        keys: StreamKeys,
        emitter: BatchEmitter,
        sql: str,
        parameters: Mapping[str, Any] | None,
        pkey_columns: Sequence[str],
        epoch_column: str,
        chunk_size: int,
        batch_size: int,
        lookback_us: int,
        log: logging.Logger,
    ) -> None:
        self.source = source
        self.redis = redis
        self.keys = keys
        self.emitter = emitter
        self.sql = sql
        self.parameters = dict(parameters or {})
        self.order_columns = [epoch_column, *pkey_columns]
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.lookback_us = lookback_us
        self.log = log

    def _wrap_error(self, exc: Exception, sql: str) -> DbStreamInputError:
        return DbStreamInputError(
            f"Stream {self.keys.stream!r}: the snapshot could not read the SQL in chunks ({exc}). It runs "
            f"your SELECT as a derived table, ordered and paged by its result columns "
            f"{self.order_columns}:\n{sql}\nMake the SQL a single SELECT that can stand in FROM (...) "
            "and returns those columns, or set snapshot_chunk_size=None to read the first load in one "
            "pass (not resumable)."
        )

    def run(self, state: StreamState, db_now_us: int) -> SnapshotResult:
        stream = self.keys.stream
        fields = state.fields
        started_us = int(fields[STARTED]) if fields.get(STARTED) else db_now_us
        done = int(fields.get(ROWS) or 0)
        resumed_at = done
        cursor = load_cursor(fields[CURSOR]) if fields.get(CURSOR) else None
        max_epoch_us = int(fields[CURSOR_US]) if fields.get(CURSOR_US) else None
        params = {
            **self.parameters,
            "window_start": self.source.bind(SNAPSHOT_START_US),
            "window_end": self.source.bind(started_us, is_end=True),
        }
        total = int(fields[TOTAL]) if fields.get(TOTAL) else None
        if not fields.get(STARTED):
            total = self._count(params)
            self.redis.save_fields(self.keys, {STARTED: started_us, ROWS: 0, TOTAL: total})
        else:
            self.log.info("Snapshot of stream %s resumes after %d rows", stream, done)
        rows_read = emitted = duplicates = deletes = 0
        clock = time.monotonic()
        quote = self.source.identifier_quote
        while True:
            sql = chunk_sql(
                self.sql, self.order_columns, after=cursor is not None, limit=self.chunk_size, quote=quote
            )
            chunk_params = {**params, **cursor_params(cursor or [])}
            chunk = QueryTotals()
            try:
                self.emitter.emit_query(
                    self.source, sql, chunk_params, self.batch_size, rows_before=done, totals=chunk
                )
            except DbStreamInputError:
                raise
            except Exception as exc:
                if rows_read or chunk.rows_read or not _looks_like_sql_error(exc):
                    raise
                raise self._wrap_error(exc, sql) from exc
            self.source.end_chunk()
            if chunk.last_row is None:
                break
            in_chunk = chunk.rows_read
            emitted += chunk.emitted
            duplicates += chunk.duplicates
            deletes += chunk.deletes
            assert chunk.max_epoch_us is not None
            max_epoch_us = (
                chunk.max_epoch_us if max_epoch_us is None else max(max_epoch_us, chunk.max_epoch_us)
            )
            rows_read += in_chunk
            done += in_chunk
            encoder = self.emitter.encoder
            assert encoder is not None
            row = chunk.last_row
            cursor = [row[encoder.columns.index(c)] for c in self.order_columns]
            assert max_epoch_us is not None
            try:
                cursor_text = dump_cursor(cursor)
            except TypeError as exc:
                raise DbStreamInputError(f"Stream {stream!r}: {exc}.") from None
            self.redis.save_fields(self.keys, {CURSOR: cursor_text, CURSOR_US: max_epoch_us, ROWS: done})
            # Nothing below this can be read again, by the snapshot or by the first normal window
            # (whose bound the source widens by up to its slack).
            covered_us = min(max_epoch_us, started_us)
            slack_us = self.source.bound_slack_us(covered_us - self.lookback_us)
            self.redis.trim(self.keys, trim_cutoff(covered_us, self.lookback_us + slack_us))
            rate, left = progress(done, total, rows_read, time.monotonic() - clock)
            self.log.info(
                "Snapshot of stream %s: rows_done=%d of ~%s (%s) rate=%.0f rows/s eta=%s",
                stream,
                done,
                "?" if total is None else total,
                "?" if not total else f"{min(100.0, 100.0 * done / total):.1f}%",
                rate,
                eta_text(left),
            )
            if in_chunk < self.chunk_size:
                break
        return SnapshotResult(
            started_us=started_us,
            max_epoch_us=max_epoch_us,
            rows_read=rows_read,
            emitted=emitted,
            duplicates=duplicates,
            deletes=deletes,
            resumed_at_rows=resumed_at,
        )

    def _count(self, params: Mapping[str, Any]) -> int | None:
        """The row count for the progress estimate; a failure here is the SQL's, reported clearly."""
        sql = count_sql(self.sql)
        try:
            for _columns, rows in self.source.batches(sql, params, 1):
                return int(rows[0][0])
        except Exception as exc:
            if not _looks_like_sql_error(exc):
                raise
            raise self._wrap_error(exc, sql) from exc
        finally:
            self.source.end_chunk()
        return None

    def finish(self) -> None:
        self.redis.drop_fields(self.keys, *FIELDS)


def _looks_like_sql_error(exc: Exception) -> bool:
    """DB-API errors (ProgrammingError, OperationalError, ...) of any driver, not network or Redis ones."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ProgrammingError", "OperationalError", "DatabaseError", "SyntaxError"}) and not (
        type(exc).__module__.startswith("redis")
    )
