"""SqlToRedisStreamOperator: one polling cycle from a SQL connection into a Redis Stream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from airflow_dbstream.core.assets import cycle_event, replay_event
from airflow_dbstream.core.params import RunRequest
from airflow_dbstream.core.spec import StreamSpec, duration
from airflow_dbstream.cycle import replay
from airflow_dbstream.hooks.lease import LockBusy
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from airflow_dbstream.operators.base import StreamOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def _run_marker(context: Context) -> str:
    """Names the run that replayed or reset a stream, for the ``replay`` field and the state."""
    run_id = context.get("run_id")
    return str(run_id) if run_id else datetime.now(UTC).strftime("manual__%Y-%m-%dT%H:%M:%S")


class SqlToRedisStreamOperator(StreamOperator):
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
    :param lookback: how far before the watermark each window starts. With the transaction guard on,
        the writers' clock skew is enough; without it, the longest transaction too: a row committed
        later than this after its timestamp can be missed.
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
    :param transaction_guard: hold the watermark while a transaction older than the window is open
        in the source, so that its rows are read when it commits, however long it ran. None (the
        default) turns it on where the source shows its transactions (Postgres, MariaDB/MySQL; the
        user needs pg_read_all_stats or PROCESS). SQLite needs none: one writer at a time.
    :param guard_max_hold: the longest the guard holds the watermark for one transaction (a forgotten
        ``idle in transaction`` session); past it, rows that transaction commits may be missed.
    :param pause_gc: pause Python's cyclic garbage collector while a query is read and sent (it is
        restored after, also on failure): less CPU on big windows, but process-wide, so opt-in.
    :param on_bad_row: ``"fail"`` (the default): a row that fails its checks (a NULL key or epoch, an
        unreadable epoch, an unencodable value) fails the cycle, nothing is skipped. ``"dead_letter"``:
        such a row goes once to the stream ``<tag>:dead`` (the error, the column, the pkey and epoch when
        it has them, its values as text) and the cycle goes on; someone must watch that stream. A missing
        column fails the cycle either way. See docs/dead-letters.md.
    """

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
        transaction_guard: bool | None = None,
        guard_max_hold: timedelta = timedelta(hours=1),
        pause_gc: bool = False,
        on_bad_row: str = "fail",
        **kwargs: Any,
    ) -> None:
        spec = StreamSpec.from_arguments(locals())
        super().__init__(spec=spec, sql_conn_id=sql_conn_id, redis_conn_id=redis_conn_id, **kwargs)
        self.run_for = None if run_for is None else duration("run_for", run_for, positive=True)
        self.poll_interval = duration("poll_interval", poll_interval, positive=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the tables the SQL reads (common-sql + OpenLineage's SQL parser); output: the stream."""
        from airflow_dbstream.operators.lineage import stream_lineage

        return stream_lineage(self.rendered_spec(), self.sql_conn_id, self.redis_conn_id, self.log)

    def run_stream(self, context: Context) -> dict[str, Any]:
        request = RunRequest.from_params(context.get("params"), self.stream)
        runner = self.runner(**({} if request.start_from is None else {"start_from": request.start_from}))
        if request.action == "replay":
            assert request.replay_from is not None
            figures = replay.replay(runner, request.replay_from, request.replay_to, _run_marker(context))
            self.announce(context, runner, replay_event(figures))
            return figures
        if request.action == "reset":
            replay.reset(runner, _run_marker(context))
        try:
            if self.run_for is None:
                figures = runner.cycle()
            else:
                figures = runner.cycles_for(self.run_for, self.poll_interval)
        except LockBusy as busy:
            keys = runner.spec.keys
            self.log.info(
                "Stream %s: skipping this cycle, another cycle (%s) holds %s for %.1f s more; it will "
                "pick up these changes.",
                keys.stream,
                busy.holder,
                keys.lock,
                busy.ms_left / 1000,
            )
            raise AirflowSkipException(f"Stream {keys.stream!r}: another cycle is running") from None
        # One event per task, with the sums of its cycles: Airflow records outlet events only when the
        # task succeeds, and queues one run of a consumer DAG for however many events it gets.
        self.announce(context, runner, cycle_event(figures))
        return figures
