"""The first load of a big table: chunks in (epoch, pkey) order, progress kept in ``<tag>:state``.

A crash or a killed task resumes after the last chunk committed; the chunk that was running is read
again and its rows already emitted are duplicates to ``seen``. The watermark is committed only when
the whole table is covered, and never past the database's clock at the snapshot's start, so the first
normal cycle re-reads everything changed while the snapshot ran.

It reads what a window reads, checked as a window checks it: first the author's SQL itself, unwrapped,
over an empty window (its columns go through the row encoder's checks, and its own failure is reported
as it is, never as the chunking's); then the rows no chunk can page (a NULL epoch or key), through the
pipeline, whose encoder names them (with ``on_bad_row="dead_letter"``: dead-letters them, each bad
version once however often the first load is resumed); then the chunks, which page only the rows
with an epoch and a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow_dbstream.core import keys as state_fields
from airflow_dbstream.core.epoch import SNAPSHOT_START_US
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keyset import (
    chunk_sql,
    count_sql,
    cursor_params,
    dump_cursor,
    load_cursor,
    unpaged_sql,
)
from airflow_dbstream.core.rows import RowEncoder
from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.core.window import trim_cutoff
from airflow_dbstream.cycle.pipeline import Pipeline, QueryTotals
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.redis_stream import RedisStreamHook, StreamState

STARTED, CURSOR, CURSOR_US, ROWS, TOTAL = state_fields.SNAPSHOT_FIELDS


@dataclass(frozen=True)
class SnapshotResult:
    started_us: int  # the database's clock when the snapshot began: the window's end
    max_epoch_us: int | None  # the last (highest) epoch covered, before and after any resume
    rows_read: int  # in this run
    emitted: int
    duplicates: int
    deletes: int
    resumed_at_rows: int
    dead_lettered: int = 0

    def add(self, chunk: QueryTotals, *, paged: bool = True) -> SnapshotResult:
        """This result with one more chunk's rows counted in; the rows no chunk pages (``paged``
        False) move no cursor: their epochs are not the table's order."""
        top = self.max_epoch_us
        if paged and chunk.max_epoch_us is not None:
            top = chunk.max_epoch_us if top is None else max(top, chunk.max_epoch_us)
        return replace(
            self,
            max_epoch_us=top,
            rows_read=self.rows_read + chunk.rows_read,
            emitted=self.emitted + chunk.emitted,
            duplicates=self.duplicates + chunk.duplicates,
            deletes=self.deletes + chunk.deletes,
            dead_lettered=self.dead_lettered + chunk.dead_lettered,
        )


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
    """Reads the author's SQL in keyset chunks through the cycle's pipeline; see keyset.py for the SQL."""

    def __init__(
        self,
        spec: StreamSpec,
        source: Source,
        redis: RedisStreamHook,
        pipeline: Pipeline,
        log: logging.Logger,
    ) -> None:
        assert spec.snapshot_chunk_size is not None
        self.spec = spec
        self.source = source
        self.redis = redis
        self.keys = spec.keys
        self.pipeline = pipeline
        self.order_columns = [spec.epoch_column, *spec.pkey_columns]
        self.chunk_size = spec.snapshot_chunk_size
        self.lookback_us = spec.lookback_us
        self.log = log
        self.cap_us: int | None = None

    def _wrap_error(self, exc: Exception, sql: str) -> DbStreamInputError:
        return DbStreamInputError(
            f"Stream {self.keys.stream!r}: the snapshot could not read the SQL in chunks ({exc}). It runs "
            f"your SELECT as a derived table, ordered and paged by its result columns "
            f"{self.order_columns}:\n{sql}\nMake the SQL a single SELECT that can stand in FROM (...) "
            "and returns those columns, or set snapshot_chunk_size=None to read the first load in one "
            "pass (not resumable)."
        )

    def run(self, state: StreamState, db_now_us: int, cap_us: int | None = None) -> SnapshotResult:
        """Read the table (or its rest, resuming); ``cap_us``: the transaction guard's cap on the
        watermark the load will commit, which the trims after each chunk must not pass."""
        self.cap_us = cap_us
        fields = state.fields
        started_us = int(fields[STARTED]) if fields.get(STARTED) else db_now_us
        done = int(fields.get(ROWS) or 0)
        result = SnapshotResult(
            started_us,
            int(fields[CURSOR_US]) if fields.get(CURSOR_US) else None,
            0,
            0,
            0,
            0,
            resumed_at_rows=done,
        )
        cursor = load_cursor(fields[CURSOR]) if fields.get(CURSOR) else None
        self._check_sql(started_us)
        params = self.source.window_params(self.spec.parameters, SNAPSHOT_START_US, started_us)
        total = int(fields[TOTAL]) if fields.get(TOTAL) else None
        if not fields.get(STARTED):
            total = self._count(params)
            self.redis.save_fields(self.keys, {STARTED: started_us, ROWS: 0, TOTAL: total})
        else:
            self.log.info("Snapshot of stream %s resumes after %d rows", self.keys.stream, done)
        result = result.add(self._read_unpaged(params, done), paged=False)
        clock = time.monotonic()
        first = True
        while True:
            chunk = self._read_chunk(params, cursor, done, first=first)
            first = False
            if chunk.last_row is None:
                break
            result = result.add(chunk)
            done += chunk.rows_read
            cursor = self._record(chunk.last_row, result, done)
            rate, left = progress(done, total, result.rows_read, time.monotonic() - clock)
            self.log.info(
                "Snapshot of stream %s: rows_done=%d of ~%s (%s) rate=%.0f rows/s eta=%s",
                self.keys.stream,
                done,
                "?" if total is None else total,
                "?" if not total else f"{min(100.0, 100.0 * done / total):.1f}%",
                rate,
                eta_text(left),
            )
            if chunk.rows_read < self.chunk_size:
                break
        return result

    def _check_sql(self, started_us: int) -> None:
        """The author's SQL as a window cycle runs it, over an empty window at the snapshot's start, its
        columns checked as every path checks them: what fails here is the SQL's own, reported as is."""
        params = self.source.window_params(self.spec.parameters, started_us, started_us)
        try:
            columns = self.source.columns(self.spec.sql, params)
        finally:
            self.source.end_chunk()
        RowEncoder(self.spec, columns)  # raises the error naming the missing columns and those returned

    def _read_unpaged(self, params: Mapping[str, Any], done: int) -> QueryTotals:
        """The rows whose epoch or key is NULL, which no chunk reads: the encoder names the first one
        (or, dead-lettering, refuses each of them)."""
        sql = unpaged_sql(
            self.spec.sql, self.order_columns, quote=self.source.identifier_quote, dialect=self.source.kind
        )
        totals = self._read(sql, params, done, explain=True)
        if totals.emitted or (totals.rows_read and not self.spec.dead_letters):  # every such row is bad
            raise RuntimeError(f"Stream {self.keys.stream!r}: a row with a NULL epoch or key was not refused")
        return totals

    def _read_chunk(
        self, params: Mapping[str, Any], cursor: list[Any] | None, done: int, *, first: bool
    ) -> QueryTotals:
        """The next chunk after the cursor, through the pipeline; a first SQL failure is explained."""
        sql = chunk_sql(
            self.spec.sql,
            self.order_columns,
            after=cursor is not None,
            limit=self.chunk_size,
            quote=self.source.identifier_quote,
            dialect=self.source.kind,
        )
        return self._read(sql, {**params, **cursor_params(cursor or [])}, done, explain=first)

    def _read(self, sql: str, params: Mapping[str, Any], done: int, *, explain: bool) -> QueryTotals:
        """One wrapped query through the pipeline; with ``explain``, a SQL failure before any row is
        explained as the wrapper's (the author's SQL itself ran in ``_check_sql``)."""
        totals = QueryTotals()
        try:
            self.pipeline.run(self.source, sql, params, rows_before=done, totals=totals)
        except DbStreamInputError:
            raise
        except Exception as exc:
            if not explain or totals.rows_read or not _looks_like_sql_error(exc):
                raise
            raise self._wrap_error(exc, sql) from exc
        self.source.end_chunk()
        return totals

    def _record(self, last_row: Sequence[Any], result: SnapshotResult, done: int) -> list[Any]:
        """Keep the progress after a chunk and trim ``seen`` below what can be read again; the new cursor."""
        encoder = self.pipeline.encoder
        assert encoder is not None
        cursor = [last_row[encoder.columns.index(c)] for c in self.order_columns]
        try:
            cursor_text = dump_cursor(cursor)
        except TypeError as exc:
            raise DbStreamInputError(f"Stream {self.keys.stream!r}: {exc}.") from None
        if result.max_epoch_us is None:  # every row so far dead-lettered, none with a readable epoch
            self.redis.save_fields(self.keys, {CURSOR: cursor_text, ROWS: done})
            return cursor
        self.redis.save_fields(self.keys, {CURSOR: cursor_text, CURSOR_US: result.max_epoch_us, ROWS: done})
        # Nothing below this can be read again, by the snapshot or by the first normal window
        # (whose bound the source widens by up to its slack), which starts at the watermark the load
        # commits minus lookback: the guard may hold that watermark at an open transaction's start.
        covered_us = min(result.max_epoch_us, result.started_us)
        if self.cap_us is not None:
            covered_us = min(covered_us, self.cap_us)
        slack_us = self.source.bound_slack_us(covered_us - self.lookback_us)
        self.redis.trim(self.keys, trim_cutoff(covered_us, self.lookback_us + slack_us))
        return cursor

    def _count(self, params: Mapping[str, Any]) -> int | None:
        """The row count for the progress estimate; a failure here is the SQL's, reported clearly."""
        sql = count_sql(self.spec.sql, self.source.kind)
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
        self.redis.drop_fields(self.keys, *state_fields.SNAPSHOT_FIELDS)


def _looks_like_sql_error(exc: Exception) -> bool:
    """DB-API errors (ProgrammingError, OperationalError, ...) of any driver, not network or Redis ones,
    nor a source's fault that Airflow's retry may cure (a killed connection is not a wrong SQL)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return (
        bool(names & {"ProgrammingError", "OperationalError", "DatabaseError", "SyntaxError"})
        and not type(exc).__module__.startswith("redis")
        and not faults.source_fault(exc)
    )
