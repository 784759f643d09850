"""One batch of rows into the stream: live rows through emit.lua, rows marked deleted as tombstones."""

from __future__ import annotations

import gc
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from airflow_dbstream.core.deletes import is_deleted
from airflow_dbstream.core.encoding import Message, RowEncoder
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.cycle.overlap import BackgroundEmitter, read_ahead
from airflow_dbstream.hooks.redis_stream import EmitResult, RedisStreamHook


@dataclass(frozen=True)
class BatchResult:
    emitted: int
    duplicates: int
    deletes: int  # tombstones emitted (counted in emitted too)


@dataclass(frozen=True)
class PreparedBatch:
    live: list[Message]
    dead: list[Message]
    max_epoch_us: int
    last_row: Sequence[Any]

    def __len__(self) -> int:
        return len(self.live) + len(self.dead)


SWITCH_INTERVAL_S = 0.0005


@dataclass
class QueryTotals:
    """What one query's rows did so far; ``rows_read`` counts rows as they are read, the rest as sent."""

    rows_read: int = 0
    emitted: int = 0
    duplicates: int = 0
    deletes: int = 0
    max_epoch_us: int | None = None
    last_row: Sequence[Any] | None = None


class BatchEmitter:
    """Encodes the rows of one query result and emits them; built once per query."""

    def __init__(
        self,
        redis: RedisStreamHook,
        keys: StreamKeys,
        *,
        variant: str,
        maxlen: int | None,
        pkey_columns: Sequence[str],
        epoch_column: str,
        tz: tzinfo,
        epoch_unit: str | None,
        deleted_column: str | None = None,
        track_keys: bool = False,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.variant = variant
        self.maxlen = maxlen
        self.pkey_columns = list(pkey_columns)
        self.epoch_column = epoch_column
        self.tz = tz
        self.epoch_unit = epoch_unit
        self.deleted_column = deleted_column
        self.track_keys = track_keys
        self.encoder: RowEncoder | None = None
        self._deleted_index: int | None = None

    def _encoder(self, columns: Sequence[str]) -> RowEncoder:
        if self.encoder is None:
            stream = self.keys.stream
            self.encoder = RowEncoder(
                stream, columns, self.pkey_columns, self.epoch_column, self.tz, self.epoch_unit
            )
            if self.deleted_column is not None:
                if self.deleted_column not in self.encoder.columns:
                    raise DbStreamInputError(
                        f"Stream {stream!r}: the query returned no column {self.deleted_column!r} "
                        f"(deleted_column); it returned {self.encoder.columns}. Select it, or fix "
                        "deleted_column (names are case-sensitive)."
                    )
                self._deleted_index = self.encoder.columns.index(self.deleted_column)
        return self.encoder

    def emit_query(
        self,
        source: Any,
        sql: str,
        parameters: Mapping[str, Any],
        batch_size: int,
        *,
        rows_before: int = 0,
        totals: QueryTotals | None = None,
    ) -> QueryTotals:
        """Read the query in batches and emit them all, overlapped: batch k is sent by a background
        thread while batch k + 1 is encoded (and, where the source allows it, k + 2 is fetched).

        Returns when every batch is in Redis; ``totals`` (given or new) shows the progress even when
        this raises.
        """
        totals = totals if totals is not None else QueryTotals()
        # The reading and sending threads wait on sockets; when their reply arrives, the GIL is handed
        # to them after at most this long, not the default 5 ms, so Redis and the database wait less.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
        # Batches make no reference cycles; the cyclic collector, run every few hundred rows, only
        # walks the rows and messages waiting in the queues (a quarter of the encoding time). It runs
        # again after the query (for a snapshot: between its chunks).
        collecting = gc.isenabled()
        gc.disable()
        background = BackgroundEmitter(self.send)
        batches = source.batches(sql, parameters, batch_size)
        if source.read_ahead:
            batches = read_ahead(batches)
        try:
            for columns, rows in batches:
                prepared = self.prepare(columns, rows, rows_before + totals.rows_read)
                background.submit(prepared)
                totals.rows_read += len(rows)
                totals.last_row = prepared.last_row
                top = totals.max_epoch_us
                totals.max_epoch_us = (
                    prepared.max_epoch_us if top is None else max(top, prepared.max_epoch_us)
                )
            totals.emitted, totals.duplicates, totals.deletes = background.finish()
        except BaseException:
            background.abandon()
            raise
        finally:
            batches.close()
            sys.setswitchinterval(switch_interval)
            if collecting:
                gc.enable()
        return totals

    def prepare(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], rows_before: int
    ) -> PreparedBatch:
        """The batch's messages, live and dead apart: all a cycle needs before Redis (see overlap)."""
        encoder = self._encoder(columns)
        messages = encoder.encode_batch(rows, rows_before + 1)
        live: list[Message] = messages
        dead: list[Message] = []
        if self._deleted_index is not None:
            index = self._deleted_index
            flags = [is_deleted(row[index]) for row in rows]
            live = [m for m, d in zip(messages, flags, strict=True) if not d]
            dead = [m for m, d in zip(messages, flags, strict=True) if d]
        return PreparedBatch(
            live=live,
            dead=dead,
            max_epoch_us=max(m.epoch_us for m in messages),
            last_row=rows[-1],
        )

    def send(self, batch: PreparedBatch, *, precheck: bool = False) -> BatchResult:
        """Emit a prepared batch; ``precheck`` skips payloads ``seen`` already holds (hook.emit)."""
        keys, variant, maxlen, track = self.keys, self.variant, self.maxlen, self.track_keys
        result = self.redis.emit(keys, variant, maxlen, batch.live, track_keys=track, precheck=precheck)
        tombstones = EmitResult(0, 0)
        if batch.dead:
            tombstones = self.redis.emit(
                keys, variant, maxlen, batch.dead, track_keys=track, script="delete", precheck=precheck
            )
        return BatchResult(
            emitted=result.emitted + tombstones.emitted,
            duplicates=result.duplicates + tombstones.duplicates,
            deletes=tombstones.emitted,
        )
