"""ReconcileDeletesOperator: find rows hard-deleted from the source and send one tombstone each."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_dbstream.core.encoding import RowEncoder
from airflow_dbstream.core.epoch import load_timezone, us_to_datetime
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks.redis_stream import LockBusy, RedisStreamHook
from airflow_dbstream.operators.sql_to_redis_stream import (
    check_stream_arguments,
    pkey_column_list,
    sql_source_hook,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

SWEEP_LEASE_MS = 30_000  # renewed by the hook's heartbeat while the sweep runs


class ReconcileDeletesOperator(BaseOperator):
    """
    Compare the source's current keys with the live keys the stream carries; tombstone the vanished.

    Each run scans every key of the source (``sql``, e.g. ``SELECT id FROM customers``) in batches and
    marks the tracked keys it finds in ``<tag>:keys`` (kept by a SqlToRedisStreamOperator with
    ``track_keys=True``) as present at the run's start on the database clock. Tracked keys neither
    found nor emitted since the run's start minus ``lookback`` get one ``op=delete`` message each,
    with ``payload`` null, and stop being tracked, so the next run does not send them again.

    :param sql_conn_id: the stream's source connection (a common-sql DbApiHook).
    :param redis_conn_id: the stream's ``redis`` connection.
    :param sql: a SELECT returning the key column(s) of every row currently in the source (templated).
    :param stream: the stream key.
    :param pkey_column: the primary key column, or a list; as in the stream's operator.
    :param lookback: the stream's lookback: keys emitted within it of the run's start wait for the next run.
    :param variant: the label copied into the tombstones.
    :param maxlen: approximate cap on the stream's length (XADD MAXLEN ~), as for the stream.
    :param batch_size: keys fetched and marked per Redis call; bounds the worker's memory.
    :param parameters: bound parameters for the SQL.
    :param source_timezone: the IANA zone of naive timestamps in a key.
    :param max_deletes: refuse to send more tombstones than this in one run (None: no limit); a guard
        against a key query that returns nothing by mistake.
    :param lock_wait: the tombstones are sent under the stream's cycle lock (so no cycle that read a
        row before its deletion emits it after its tombstone); how long to wait for a running cycle.
    """

    template_fields: Sequence[str] = ("sql", "stream", "variant", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}
    ui_color = "#e4e2fd"

    def __init__(
        self,
        *,
        sql_conn_id: str,
        redis_conn_id: str = RedisStreamHook.default_conn_name,
        sql: str,
        stream: str,
        pkey_column: str | Sequence[str],
        lookback: timedelta,
        variant: str,
        maxlen: int | None = None,
        batch_size: int = 10_000,
        parameters: Mapping[str, Any] | None = None,
        source_timezone: str = "UTC",
        max_deletes: int | None = None,
        lock_wait: timedelta = timedelta(minutes=2),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_stream_arguments(lookback, "the stream's", batch_size, pkey_column)
        self.sql_conn_id = sql_conn_id
        self.redis_conn_id = redis_conn_id
        self.sql = sql
        self.stream = stream
        self.pkey_column = pkey_column
        self.lookback = lookback
        self.variant = variant
        self.maxlen = maxlen
        self.batch_size = batch_size
        self.parameters = parameters
        self.source_timezone = source_timezone
        self.max_deletes = max_deletes
        self.lock_wait = lock_wait

    @property
    def pkey_columns(self) -> list[str]:
        return pkey_column_list(self.pkey_column)

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        keys = StreamKeys.for_stream(self.stream)
        tz = load_timezone(self.source_timezone)
        redis = RedisStreamHook(self.redis_conn_id)
        if redis.read_state(keys).fields.get("track_keys") != "1":
            raise DbStreamInputError(
                f"Stream {self.stream!r} does not track its keys, so its hard deletes cannot be found: set "
                "track_keys=True on its SqlToRedisStreamOperator from the stream's first cycle (a stream "
                "that already carried rows needs a fresh snapshot to know all its keys)."
            )
        source = Source.for_hook(sql_source_hook(self.sql_conn_id), tz, None)
        lookback_us = self.lookback // timedelta(microseconds=1)
        scanned = 0
        source.open()
        try:
            started_us = source.now_us()
            encoder: RowEncoder | None = None
            params = dict(self.parameters or {})
            for columns, rows in source.batches(self.sql, params, self.batch_size):
                if encoder is None:
                    # Only the key columns matter; the first one stands in for the epoch column.
                    pkeys = self.pkey_columns
                    encoder = RowEncoder(self.stream, columns, pkeys, pkeys[0], tz, None)
                pkeys_found = [encoder.key(row, scanned + i + 1) for i, row in enumerate(rows)]
                redis.mark_keys(keys, pkeys_found, started_us)
                scanned += len(rows)
        finally:
            source.close()

        cutoff_us = started_us - lookback_us
        client = redis.get_conn()
        tracked = int(client.zcard(keys.keys))
        vanished = int(client.zcount(keys.keys, "-inf", f"({cutoff_us}"))
        if self.max_deletes is not None and vanished > self.max_deletes:
            raise DbStreamInputError(
                f"Stream {self.stream!r}: {vanished} of {tracked} tracked keys are missing from the source "
                f"({scanned} keys scanned), more than max_deletes={self.max_deletes}. Nothing was sent; "
                "check the key SQL, or raise max_deletes if the rows really are gone."
            )
        try:
            with redis.cycle_lock(keys, SWEEP_LEASE_MS, self.lock_wait.total_seconds()):
                deleted = redis.sweep(keys, self.variant, self.maxlen, cutoff_us, min(self.batch_size, 1000))
        except LockBusy as busy:
            raise RuntimeError(
                f"Stream {self.stream!r}: a cycle ({busy.holder}) held {keys.lock} for longer than "
                f"lock_wait={self.lock_wait}; no tombstone was sent, a retry finds the same deletes."
            ) from None
        figures = {
            "stream": self.stream,
            "keys_scanned": scanned,
            "keys_tracked": tracked - deleted,
            "deleted": deleted,
            "cutoff": us_to_datetime(cutoff_us).isoformat(),
            "duration_seconds": round(time.monotonic() - started, 3),
        }
        self.log.info(
            "Reconcile of stream %s: keys_scanned=%d deleted=%d keys_tracked=%d cutoff=%s "
            "duration_seconds=%s",
            self.stream,
            scanned,
            deleted,
            figures["keys_tracked"],
            figures["cutoff"],
            figures["duration_seconds"],
        )
        return figures
