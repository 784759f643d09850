"""Operations outside the cycle: replay a time range into the stream, reset a stream's state.

A replay appends every row of the range again, whatever ``seen`` says, with an extra ``replay``
field (the run that asked for it) so consumers can tell replayed messages from changes. It reads
and writes no dedup state and never moves the watermark. A reset deletes the watermark, ``seen``
and digests and a snapshot's progress (never the stream's messages, nor the live-key set that
ReconcileDeletesOperator reads): the next cycle is a first cycle again.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_dbstream.core.deletes import is_deleted
from airflow_dbstream.core.encoding import RowEncoder
from airflow_dbstream.core.epoch import datetime_to_us, load_timezone, us_to_datetime
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.cycle.sources import Source

if TYPE_CHECKING:
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator


def replay(
    operator: SqlToRedisStreamOperator,
    redis: RedisStreamHook,
    replay_from: datetime,
    replay_to: datetime | None,
    marker: str,
) -> dict[str, Any]:
    """Send every row whose epoch is in [replay_from, replay_to) again, marked ``replay=marker``."""
    started = time.monotonic()
    keys = StreamKeys.for_stream(operator.stream)
    tz = load_timezone(operator.source_timezone)
    source = Source.for_hook(operator.get_source_hook(), tz, operator.epoch_unit)
    source.check_sql(operator.sql, operator.stream)
    start_us = datetime_to_us(replay_from, UTC)
    rows_read = replayed = 0
    client = redis.get_conn()
    source.open()
    try:
        end_us = source.now_us() if replay_to is None else datetime_to_us(replay_to, UTC)
        params = {
            **(operator.parameters or {}),
            "window_start": source.bind(start_us),
            "window_end": source.bind(end_us, is_end=True),
        }
        encoder: RowEncoder | None = None
        deleted_index: int | None = None
        for columns, rows in source.batches(operator.sql, params, operator.batch_size):
            if encoder is None:
                encoder = RowEncoder(
                    operator.stream, columns, operator.pkey_columns, operator.epoch_column, tz,
                    operator.epoch_unit,
                )  # fmt: skip
                deleted_index = _deleted_index(operator, encoder.columns)
            messages = [encoder.encode(row, rows_read + i + 1) for i, row in enumerate(rows)]
            rows_read += len(messages)
            pipe = client.pipeline(transaction=False)
            for row, m in zip(rows, messages, strict=True):
                if not start_us <= m.epoch_us < end_us:  # the SQL may not bind window_end
                    continue
                fields = {"payload": m.payload, "variant": operator.variant, "epoch": m.epoch_us,
                          "pkey": m.pkey, "replay": marker}  # fmt: skip
                if deleted_index is not None and is_deleted(row[deleted_index]):
                    fields["op"] = "delete"  # as the cycle sent it: a soft-deleted row is a tombstone
                pipe.xadd(keys.stream, fields, maxlen=operator.maxlen, approximate=True)
                replayed += 1
            pipe.execute()
    finally:
        source.close()
    figures = {
        "stream": operator.stream,
        "replay": marker,
        "replay_from": us_to_datetime(start_us).isoformat(),
        "replay_to": us_to_datetime(end_us).isoformat(),
        "rows_read": rows_read,
        "replayed": replayed,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    client.hset(keys.state, "last_replay", json.dumps({**figures, "finished_at": _now()}))
    return figures


def _deleted_index(operator: SqlToRedisStreamOperator, columns: list[str]) -> int | None:
    if operator.deleted_column is None:
        return None
    if operator.deleted_column not in columns:
        raise DbStreamInputError(
            f"Stream {operator.stream!r}: the query returned no column {operator.deleted_column!r} "
            f"(deleted_column); it returned {columns}."
        )
    return columns.index(operator.deleted_column)


def reset(redis: RedisStreamHook, stream: str, marker: str) -> dict[str, Any]:
    """Forget the watermark, ``seen`` and digests; keep the stream and a note of the reset."""
    keys = StreamKeys.for_stream(stream)
    client = redis.get_conn()
    previous = client.hget(keys.state, "watermark")
    forgotten = int(client.zcard(keys.seen))
    pipe = client.pipeline(transaction=True)  # one slot: MULTI/EXEC works on a cluster too
    pipe.delete(keys.seen, keys.digest, keys.state)
    note = {
        "reset": marker,
        "previous_watermark": None if previous is None else us_to_datetime(int(previous)).isoformat(),
        "seen_forgotten": forgotten,
        "finished_at": _now(),
    }
    pipe.hset(keys.state, "last_reset", json.dumps(note))
    pipe.execute()
    return {"stream": stream, **note}


def _now() -> str:
    return datetime.now(UTC).isoformat()
