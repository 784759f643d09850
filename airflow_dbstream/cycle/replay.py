"""Operations outside the cycle: replay a time range into the stream, reset a stream's state.

A replay appends every row of the range again, whatever ``seen`` says, with an extra ``replay``
field (the run that asked for it) so consumers can tell replayed messages from changes. It reads
and writes no dedup state and never moves the watermark. A reset deletes the watermark, ``seen``
and digests and a snapshot's progress (never the stream's messages, nor the live-key set that
ReconcileDeletesOperator reads): the next cycle is a first cycle again.

Both run as a cycle does: under the stream's lock (waiting for a running cycle), their writes fenced
by its token, through the same retries and error translation; a replay reads through the same pipeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_dbstream.core import keys as state_fields
from airflow_dbstream.core.epoch import datetime_to_us
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.figures import iso, replay_line
from airflow_dbstream.cycle.pipeline import Pipeline
from airflow_dbstream.cycle.runner import CycleRunner
from airflow_dbstream.hooks.lease import Lease, LockBusy

OPERATION_LOCK_WAIT = timedelta(minutes=1)  # a replay or reset waits this long for a running cycle


@contextmanager
def _held(runner: CycleRunner, what: str) -> Iterator[Lease]:
    """The stream's lock for a replay or reset, waiting a while for a running cycle to end."""
    wait = max(runner.spec.lock_wait, OPERATION_LOCK_WAIT)
    keys = runner.spec.keys
    try:
        with runner.hold(wait) as held:
            yield held
    except LockBusy as busy:
        raise DbStreamInputError(
            f"Stream {runner.spec.stream!r} was not {what}: another cycle ({busy.holder}) still held "
            f"{keys.lock} after {wait.total_seconds():.0f} s. Pause the stream's other DAGs, then trigger "
            f"the {'reset' if what == 'reset' else 'replay'} again."
        ) from None


def replay(
    runner: CycleRunner, replay_from: datetime, replay_to: datetime | None, marker: str
) -> dict[str, Any]:
    """Send every row whose epoch is in [replay_from, replay_to) again, marked ``replay=marker``."""
    started = time.monotonic()
    spec = runner.spec
    start_us = datetime_to_us(replay_from, UTC)
    with _held(runner, "replayed") as held, runner.source() as source:
        end_us = source.now_us() if replay_to is None else datetime_to_us(replay_to, UTC)
        pipeline = Pipeline(spec, runner.redis, held, end_us)
        params = source.window_params(spec.parameters, start_us, end_us)
        done = pipeline.run(source, spec.sql, params, send=pipeline.replayer(marker, start_us, end_us))
        figures = {
            "stream": spec.stream,
            "replay": marker,
            "replay_from": iso(start_us),
            "replay_to": iso(end_us),
            "rows_read": done.rows_read,
            "replayed": done.emitted,
            "dead_lettered": done.dead_lettered,
            "duration_seconds": round(time.monotonic() - started, 3),
        }
        note = json.dumps({**figures, "finished_at": datetime.now(UTC).isoformat()})
        runner.redis.save_fields(spec.keys, {state_fields.LAST_REPLAY: note})
    runner.log.info(replay_line(figures))
    return figures


def reset(runner: CycleRunner, marker: str) -> dict[str, Any]:
    """Forget the watermark, ``seen`` and digests; keep the stream and a note of the reset."""
    keys = runner.spec.keys
    with _held(runner, "reset") as held:
        state = runner.redis.read_state(keys)
        note = {
            "reset": marker,
            "previous_watermark": iso(state.watermark_us),
            "seen_forgotten": runner.redis.seen_size(keys),
            "finished_at": datetime.now(UTC).isoformat(),
        }
        runner.redis.reset(keys, json.dumps(note), held)
    runner.log.warning("Stream %s reset by %s: %s", runner.spec.stream, marker, note)
    return {"stream": runner.spec.stream, **note}
