"""ReconcileDeletesOperator: find rows hard-deleted from the source and send one tombstone each."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_dbstream.core import keys as state_fields
from airflow_dbstream.core.assets import reconcile_event
from airflow_dbstream.core.errors import BadRowError, DbStreamInputError
from airflow_dbstream.core.figures import iso
from airflow_dbstream.core.rows import RowEncoder
from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.cycle.runner import CycleRunner
from airflow_dbstream.hooks.lease import LockBusy
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from airflow_dbstream.operators.base import StreamOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

SWEEP_LEASE = timedelta(seconds=30)  # renewed by the lease's heartbeat while the sweep runs


class ReconcileDeletesOperator(StreamOperator):
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
    :param on_bad_row: as the stream's. ``"fail"``: a NULL or unencodable key fails the run, nothing is
        sent. ``"dead_letter"``: such a row is skipped and counted (``bad_keys``, with a WARNING): it
        cannot be a tracked key, since the stream never emitted it (its own cycle dead-letters the
        row, with all its values); max_deletes still bounds the tombstones.
    """

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
        on_bad_row: str = "fail",
        **kwargs: Any,
    ) -> None:
        spec = StreamSpec.from_arguments(
            {**locals(), "lock_lease": SWEEP_LEASE, "lookback_hint": "the stream's"}
        )
        super().__init__(spec=spec, sql_conn_id=sql_conn_id, redis_conn_id=redis_conn_id, **kwargs)
        self.max_deletes = max_deletes

    def run_stream(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        runner = self.runner()
        spec, keys, redis = runner.spec, runner.spec.keys, runner.redis
        if redis.read_state(keys).fields.get(state_fields.TRACK_KEYS) != "1":
            raise DbStreamInputError(
                f"Stream {spec.stream!r} does not track its keys, so its hard deletes cannot be found: set "
                "track_keys=True on its SqlToRedisStreamOperator from the stream's first cycle (a stream "
                "that already carried rows needs a fresh snapshot to know all its keys)."
            )
        scanned, bad_keys, started_us = self._mark_present(runner)
        cutoff_us = started_us - spec.lookback_us
        tracked, vanished = redis.count_keys(keys, cutoff_us)
        if self.max_deletes is not None and vanished > self.max_deletes:
            raise DbStreamInputError(
                f"Stream {spec.stream!r}: {vanished} of {tracked} tracked keys are missing from the source "
                f"({scanned} keys scanned), more than max_deletes={self.max_deletes}. Nothing was sent; "
                "check the key SQL, or raise max_deletes if the rows really are gone."
            )
        try:
            with runner.hold(spec.lock_wait) as held:
                deleted = redis.sweep(
                    keys, spec.variant, spec.maxlen, cutoff_us, held, min(spec.batch_size, 1000)
                )
        except LockBusy as busy:
            raise RuntimeError(
                f"Stream {spec.stream!r}: a cycle ({busy.holder}) held {keys.lock} for longer than "
                f"lock_wait={spec.lock_wait}; no tombstone was sent, a retry finds the same deletes."
            ) from None
        figures = {
            "stream": spec.stream,
            "keys_scanned": scanned,
            "bad_keys": bad_keys,
            "keys_tracked": tracked - deleted,
            "deleted": deleted,
            "cutoff": iso(cutoff_us),
            "duration_seconds": round(time.monotonic() - started, 3),
        }
        self.log.info(
            "Reconcile of stream %s: keys_scanned=%d deleted=%d keys_tracked=%d bad_keys=%d cutoff=%s "
            "duration_seconds=%s",
            spec.stream,
            scanned,
            deleted,
            figures["keys_tracked"],
            bad_keys,
            figures["cutoff"],
            figures["duration_seconds"],
        )
        self.announce(context, runner, reconcile_event(figures))
        return figures

    def _mark_present(self, runner: CycleRunner) -> tuple[int, int, int]:
        """Scan the source's keys, marking each tracked one present; (keys scanned, bad keys skipped,
        the scan's start)."""
        spec, keys = runner.spec, runner.spec.keys
        scanned = bad = 0
        with runner.source(windowed=False) as source:
            started_us = source.now_us()
            encoder: RowEncoder | None = None
            for columns, rows in source.batches(spec.sql, spec.parameters, spec.batch_size):
                encoder = encoder or RowEncoder(spec, columns)  # only the key columns matter
                try:
                    found = [encoder.key(row, scanned + i + 1) for i, row in enumerate(rows)]
                except BadRowError:
                    if not spec.dead_letters:
                        raise
                    found = _good_keys(encoder, rows, scanned + 1)
                    bad += len(rows) - len(found)
                runner.redis.mark_keys(keys, found, started_us)
                scanned += len(rows)
        if bad:
            self.log.warning(
                "Reconcile of stream %s: %d of %d rows have a NULL or unencodable key (on_bad_row="
                "dead_letter): skipped; no tracked key can be one of them. The stream's cycles send such "
                "rows to %s.",
                spec.stream,
                bad,
                scanned,
                keys.dead,
            )
        return scanned, bad, started_us


def _good_keys(encoder: RowEncoder, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[str]:
    """The keys of the rows whose key the encoder accepts."""
    found = []
    for n, row in enumerate(rows, first_row_number):
        try:
            found.append(encoder.key(row, n))
        except BadRowError:
            continue
    return found
