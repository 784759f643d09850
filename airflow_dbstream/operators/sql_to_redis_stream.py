"""SqlToRedisStreamOperator: one polling cycle from a SQL connection into a Redis Stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_dbstream.core.epoch import check_unit, datetime_to_us, load_timezone, us_to_datetime
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.params import RunRequest
from airflow_dbstream.core.window import lag_seconds, next_watermark, plan_window
from airflow_dbstream.cycle.pipeline import BatchEmitter
from airflow_dbstream.cycle.replay import replay, reset
from airflow_dbstream.cycle.snapshot import Snapshot
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.redis_stream import LockBusy, RedisStreamHook
from airflow_dbstream.hooks.status import record_status

if TYPE_CHECKING:
    from airflow.sdk import Context

RESERVED_PARAMETERS = ("window_start", "window_end")
RESET_LOCK_WAIT = timedelta(minutes=1)  # a reset waits this long for a running cycle of the stream


def _iso(epoch_us: int | None) -> str | None:
    return None if epoch_us is None else us_to_datetime(epoch_us).isoformat()


def _duration(name: str, value: timedelta | float, *, positive: bool) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta) or value < timedelta(0) or (positive and not value):
        kind = "a positive" if positive else "a non-negative"
        raise DbStreamInputError(f"{name} must be {kind} timedelta (or seconds), got {value!r}.")
    return value


def _run_marker(context: Context) -> str:
    """Names the run that replayed or reset a stream, for the ``replay`` field and the state."""
    run_id = context.get("run_id")
    return str(run_id) if run_id else datetime.now(UTC).strftime("manual__%Y-%m-%dT%H:%M:%S")


def sql_source_hook(sql_conn_id: str) -> Any:
    """The DbApiHook of ``sql_conn_id``; anything else is refused with a clear message."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        connection = BaseHook.get_connection(sql_conn_id)
    except Exception as exc:
        if type(exc).__name__ not in ("AirflowNotFoundException", "ConnectionNotFound"):
            raise
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is not defined: create it in Admin > Connections "
            f"or as AIRFLOW_CONN_{sql_conn_id.upper()}."
        ) from None
    hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is a {connection.conn_type!r} connection whose hook "
            f"{type(hook).__name__} is not a SQL (DbApiHook) hook; point it at a SQL database."
        )
    return hook


def pkey_column_list(pkey_column: str | Sequence[str]) -> list[str]:
    return [pkey_column] if isinstance(pkey_column, str) else list(pkey_column)


def check_stream_arguments(
    lookback: timedelta, lookback_hint: str, batch_size: int, pkey_column: str | Sequence[str]
) -> None:
    """The checks every operator writing to a stream makes at parse time, with the same messages."""
    if not isinstance(lookback, timedelta) or lookback <= timedelta(0):
        raise DbStreamInputError(
            f"lookback must be a positive timedelta ({lookback_hint}), got {lookback!r}."
        )
    if batch_size < 1:
        raise DbStreamInputError(f"batch_size must be at least 1, got {batch_size!r}.")
    pkeys = pkey_column_list(pkey_column)
    if not pkeys or not all(isinstance(c, str) and c for c in pkeys):
        raise DbStreamInputError(f"pkey_column must be a column name or a list of them, got {pkey_column!r}.")


class SqlToRedisStreamOperator(BaseOperator):
    """
    Run one cycle: read the window of recently modified rows and append new versions to a stream.

    The watermark is committed only when the whole window has been processed, so a failed cycle
    can be cleared and rerun from the UI; rows already emitted are recognised and not sent again.

    :param sql_conn_id: any Airflow connection whose hook is a common-sql DbApiHook.
    :param redis_conn_id: a ``redis`` connection (TLS, ACL, db and cluster extras work).
    :param sql: a SELECT (or a ``.sql`` file), templated, binding ``window_start`` and optionally
        ``window_end`` in the driver's named style (``%(window_start)s`` or ``:window_start``).
    :param stream: the stream key; companion keys share its hash slot.
    :param pkey_column: the primary key column, or a list of them for a composite key.
    :param epoch_column: the modification time: timestamp, datetime, date or numeric epoch.
    :param lookback: how far before the watermark each window starts: longest transaction plus
        the writers' clock skew. A row committed later than this after its timestamp can be missed.
    :param variant: a label copied into every message, e.g. ``customer.v1``.
    :param start_from: where the first cycle starts; None reads the whole table (a full snapshot).
    :param maxlen: approximate cap on the stream's length (XADD MAXLEN ~).
    :param batch_size: rows fetched and emitted per script call.
    :param parameters: more bound parameters for the SQL.
    :param source_timezone: the IANA zone in which naive timestamps are read.
    :param epoch_unit: for numeric epoch columns: 's', 'ms' or 'us'.
    :param run_for: None runs one cycle; a duration runs cycles back to back for that long (for a
        ``@continuous`` DAG: changes reach the stream within about ``poll_interval``).
    :param poll_interval: when ``run_for`` is set, cycles start this far apart (back to back when a
        cycle takes longer): a commit reaches the stream within about poll_interval plus one cycle.
    :param snapshot_chunk_size: the full snapshot (no watermark, ``start_from=None``) reads this many
        rows per chunk in (epoch, pkey) order and records its progress after each, so a killed task
        resumes where it stopped. None reads it in one pass (not resumable).
    :param deleted_column: a boolean or timestamp column marking soft-deleted rows: such a row is
        emitted once with ``op=delete``.
    :param track_keys: keep the live keys the stream carries in ``<tag>:keys``, which
        ReconcileDeletesOperator compares with the source to find hard deletes.
    :param lock_lease: how long the stream's lock outlives its last renewal (renewed by a heartbeat every
        third of the lease, and before a batch once a sixth has passed); a lock left by a killed worker
        frees itself after this.
    :param lock_wait: how long to wait for another cycle of the same stream before skipping.
    """

    template_fields: Sequence[str] = ("sql", "stream", "variant", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}
    ui_color = "#fde2e4"

    def __init__(
        self,
        *,
        sql_conn_id: str,
        redis_conn_id: str = RedisStreamHook.default_conn_name,
        sql: str,
        stream: str,
        pkey_column: str | Sequence[str],
        epoch_column: str,
        lookback: timedelta,
        variant: str,
        start_from: datetime | None = None,
        maxlen: int | None = None,
        batch_size: int = 1000,
        parameters: Mapping[str, Any] | None = None,
        source_timezone: str = "UTC",
        epoch_unit: str | None = None,
        run_for: timedelta | float | None = None,
        poll_interval: timedelta | float = timedelta(seconds=1),
        snapshot_chunk_size: int | None = 50_000,
        deleted_column: str | None = None,
        track_keys: bool = False,
        lock_lease: timedelta = timedelta(seconds=30),
        lock_wait: timedelta = timedelta(0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_stream_arguments(lookback, "longest transaction + writers' clock skew", batch_size, pkey_column)
        if maxlen is not None and maxlen < 1:
            raise DbStreamInputError(f"maxlen must be None or a positive length, got {maxlen!r}.")
        clash = [p for p in RESERVED_PARAMETERS if p in (parameters or {})]
        if clash:
            raise DbStreamInputError(f"parameters must not set {clash}: the operator binds them each cycle.")
        self.sql_conn_id = sql_conn_id
        self.redis_conn_id = redis_conn_id
        self.sql = sql
        self.stream = stream
        self.pkey_column = pkey_column
        self.epoch_column = epoch_column
        self.lookback = lookback
        self.variant = variant
        self.start_from = start_from
        self.maxlen = maxlen
        self.batch_size = batch_size
        self.parameters = parameters
        self.source_timezone = source_timezone
        self.epoch_unit = check_unit(epoch_unit)
        self.run_for = None if run_for is None else _duration("run_for", run_for, positive=True)
        self.poll_interval = _duration("poll_interval", poll_interval, positive=False)
        if snapshot_chunk_size is not None and snapshot_chunk_size < 1:
            raise DbStreamInputError(
                f"snapshot_chunk_size must be None or at least 1, got {snapshot_chunk_size!r}."
            )
        self.snapshot_chunk_size = snapshot_chunk_size
        self.deleted_column = deleted_column
        self.track_keys = track_keys
        if lock_lease < timedelta(milliseconds=100) or lock_wait < timedelta(0):
            raise DbStreamInputError(
                f"lock_lease must be at least 100 ms and lock_wait not negative, got {lock_lease!r}, "
                f"{lock_wait!r}."
            )
        self.lock_lease = lock_lease
        self.lock_wait = lock_wait

    @property
    def pkey_columns(self) -> list[str]:
        return pkey_column_list(self.pkey_column)

    def get_source_hook(self) -> Any:
        """The DbApiHook of ``sql_conn_id``; anything else is refused with a clear message."""
        return sql_source_hook(self.sql_conn_id)

    def _snapshot(
        self,
        source: Source,
        redis: RedisStreamHook,
        keys: StreamKeys,
        emitter: BatchEmitter,
        lookback_us: int,
    ) -> Snapshot:
        assert self.snapshot_chunk_size is not None
        return Snapshot(
            source=source,
            redis=redis,
            keys=keys,
            emitter=emitter,
            sql=self.sql,
            parameters=self.parameters,
            pkey_columns=self.pkey_columns,
            epoch_column=self.epoch_column,
            chunk_size=self.snapshot_chunk_size,
            batch_size=self.batch_size,
            lookback_us=lookback_us,
            log=self.log,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the tables the SQL reads (common-sql + OpenLineage's SQL parser); output: the stream."""
        from airflow_dbstream.operators.lineage import stream_lineage

        return stream_lineage(self)

    def execute(self, context: Context) -> dict[str, Any]:
        request = RunRequest.from_params(context.get("params"), self.stream)
        if request.action == "replay":
            return self._replay(context, request)
        if request.start_from is not None:
            self.start_from = request.start_from
        if request.action == "reset":
            self._reset(_run_marker(context))
        return self._run_cycles(context)

    def _reset(self, marker: str) -> None:
        """Under the stream's lock, so a running cycle cannot commit its watermark after the reset."""
        redis, keys = self._redis_hook(), StreamKeys.for_stream(self.stream)
        lease_ms = self.lock_lease // timedelta(milliseconds=1)
        wait_s = max(self.lock_wait, RESET_LOCK_WAIT).total_seconds()
        try:
            with redis.cycle_lock(keys, lease_ms, wait_s):
                note = reset(redis, self.stream, marker)
        except LockBusy as busy:
            raise DbStreamInputError(
                f"Stream {self.stream!r} was not reset: another cycle ({busy.holder}) still held "
                f"{keys.lock} after {wait_s:.0f} s. Pause the stream's other DAGs, then trigger the "
                "reset again."
            ) from None
        self.log.warning("Stream %s reset by %s: %s", self.stream, marker, note)

    def _replay(self, context: Context, request: RunRequest) -> dict[str, Any]:
        assert request.replay_from is not None
        marker = _run_marker(context)
        figures = replay(self, RedisStreamHook(self.redis_conn_id), request.replay_from, request.replay_to,
                         marker)  # fmt: skip
        self.log.info(
            "Replay of stream %s: rows_read=%d replayed=%d range=[%s, %s) replay=%s duration_seconds=%s",
            self.stream, figures["rows_read"], figures["replayed"], figures["replay_from"],
            figures["replay_to"], marker, figures["duration_seconds"],
        )  # fmt: skip
        return figures

    def _run_cycles(self, context: Context) -> dict[str, Any]:
        if self.run_for is None:
            return self._cycle_and_status(context)
        deadline = time.monotonic() + self.run_for.total_seconds()
        period = self.poll_interval.total_seconds()
        totals = dict.fromkeys(("rows_read", "emitted", "duplicates"), 0)
        cycles = 0
        figures: dict[str, Any] | None = None
        while True:
            started = time.monotonic()
            try:
                figures = self._cycle_and_status(context)
            except AirflowSkipException:  # another cycle holds the stream: try again next period
                if figures is None and started + period >= deadline:
                    raise
            else:
                cycles += 1
                for name in totals:
                    totals[name] += figures[name]
            # Cycles start poll_interval apart (back to back when one takes longer), so a commit
            # waits at most about poll_interval plus one cycle before it is in the stream.
            next_start = max(time.monotonic(), started + period)
            if next_start >= deadline:
                break
            time.sleep(max(0.0, next_start - time.monotonic()))
        if figures is None:
            raise AirflowSkipException(f"Stream {self.stream!r}: another cycle held the stream throughout")
        return {**figures, "cycles": cycles, **{f"{name}_total": n for name, n in totals.items()}}

    def _redis_hook(self) -> RedisStreamHook:
        """One hook (one connection pool, scripts registered once) for all cycles of this run."""
        if getattr(self, "_redis", None) is None:
            self._redis = RedisStreamHook(self.redis_conn_id)
        return self._redis

    def _cycle_and_status(self, context: Context) -> dict[str, Any]:
        figures = self._cycle(context)
        client = self._redis_hook().get_conn()
        faults.call("status", self.stream, lambda: record_status(client, StreamKeys.for_stream(self.stream)))
        return figures

    def _cycle(self, context: Context) -> dict[str, Any]:
        keys = StreamKeys.for_stream(self.stream)
        redis = self._redis_hook()
        with self._cycle_lock(redis, keys):
            return self._locked_cycle(redis, keys)

    @contextmanager
    def _cycle_lock(self, redis: RedisStreamHook, keys: StreamKeys) -> Iterator[None]:
        """One cycle per stream at a time: overlapping cycles would reorder versions of a key."""
        lease_ms = self.lock_lease // timedelta(milliseconds=1)
        try:
            with redis.cycle_lock(keys, lease_ms, self.lock_wait.total_seconds()):
                yield
        except LockBusy as busy:
            self.log.info(
                "Stream %s: skipping this cycle, another cycle (%s) holds %s for %.1f s more; it will "
                "pick up these changes.",
                self.stream,
                busy.holder,
                keys.lock,
                busy.ms_left / 1000,
            )
            raise AirflowSkipException(f"Stream {self.stream!r}: another cycle is running") from None

    def _locked_cycle(self, redis: RedisStreamHook, keys: StreamKeys) -> dict[str, Any]:
        started = time.monotonic()
        tz = load_timezone(self.source_timezone)
        source = Source.for_hook(self.get_source_hook(), tz, self.epoch_unit)
        source.check_sql(self.sql, self.stream)
        lookback_us = self.lookback // timedelta(microseconds=1)
        start_from_us = None if self.start_from is None else datetime_to_us(self.start_from, tz)

        state = redis.read_state(keys)
        rows_read = emitted = duplicates = deletes = 0
        max_epoch_us: int | None = None
        snapshot: Snapshot | None = None
        emitter = BatchEmitter(
            redis,
            keys,
            variant=self.variant,
            maxlen=self.maxlen,
            pkey_columns=self.pkey_columns,
            epoch_column=self.epoch_column,
            tz=tz,
            epoch_unit=self.epoch_unit,
            deleted_column=self.deleted_column,
            track_keys=self.track_keys,
        )
        source.open()
        try:
            db_now_us = source.now_us()
            window = plan_window(state.watermark_us, lookback_us, start_from_us, db_now_us)
            if window.snapshot and self.snapshot_chunk_size:
                snapshot = self._snapshot(source, redis, keys, emitter, lookback_us)
                done = snapshot.run(state, db_now_us)
                db_now_us = done.started_us  # the first normal window re-reads all changed since
                window = plan_window(None, lookback_us, None, db_now_us)
                rows_read, emitted, duplicates = done.rows_read, done.emitted, done.duplicates
                deletes, max_epoch_us = done.deletes, done.max_epoch_us
            else:
                params = {
                    **(self.parameters or {}),
                    "window_start": source.bind(window.start_us),
                    "window_end": source.bind(window.end_us, is_end=True),
                }
                done = emitter.emit_query(source, self.sql, params, self.batch_size)
                rows_read, emitted, duplicates = done.rows_read, done.emitted, done.duplicates
                deletes, max_epoch_us = done.deletes, done.max_epoch_us
        finally:
            source.close()

        watermark_us = next_watermark(state.watermark_us, max_epoch_us, db_now_us)
        figures: dict[str, Any] = {
            "stream": self.stream,
            "rows_read": rows_read,
            "emitted": emitted,
            "duplicates": duplicates,
            "deletes": deletes,
            "window_start": _iso(window.start_us),
            "window_end": _iso(window.end_us),
            "watermark": _iso(watermark_us),
            "lag_seconds": lag_seconds(watermark_us, db_now_us),
            "duration_seconds": round(time.monotonic() - started, 3),
        }
        # Keep in `seen` every row the next window's (widened) bound can return again.
        slack_us = 0 if watermark_us is None else source.bound_slack_us(watermark_us - lookback_us)
        committed_us = redis.commit(
            keys,
            watermark_us,
            lookback_us + slack_us,
            {
                "last_cycle": json.dumps({**figures, "finished_at": datetime.now(UTC).isoformat()}),
                **({"track_keys": "1"} if self.track_keys else {}),
            },
        )
        if snapshot is not None and committed_us is not None:
            snapshot.finish()  # the watermark now covers the table: a later snapshot starts afresh
        if committed_us != watermark_us:  # another cycle committed further meanwhile
            figures["watermark"] = _iso(committed_us)
            figures["lag_seconds"] = lag_seconds(committed_us, db_now_us)
        self.log.info(
            "Cycle of stream %s: rows_read=%d emitted=%d duplicates=%d window=[%s, %s) watermark=%s "
            "lag_seconds=%s duration_seconds=%s%s",
            self.stream,
            rows_read,
            emitted,
            duplicates,
            figures["window_start"],
            figures["window_end"],
            figures["watermark"],
            figures["lag_seconds"],
            figures["duration_seconds"],
            " (snapshot)" if window.snapshot else "",
        )
        return figures
