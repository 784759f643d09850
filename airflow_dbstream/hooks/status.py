"""A stream's status: watermark, lag, sizes, the last cycle and each consumer group's backlog.

Every cycle records these figures in ``<tag>:state`` (field ``status``); the status command reads
them live. Only cheap O(1) Redis calls: HGETALL of a small hash, TIME, ZCARD, XLEN, XINFO GROUPS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow_dbstream.core.keys import StreamKeys

STATUS_FIELD = "status"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _json_field(fields: dict[str, str], name: str) -> Any:
    raw = fields.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _groups(reply: Any) -> list[dict[str, Any]]:
    """XINFO GROUPS' reply, or the error it gave in a pipeline (no such key: no groups yet)."""
    import redis

    if isinstance(reply, redis.exceptions.NoPermissionError):
        raise reply  # an ACL to fix, not an empty stream
    if isinstance(reply, redis.ResponseError):  # a stream not written yet has no groups
        return []
    if isinstance(reply, Exception):
        raise reply
    result = []
    for group in reply:
        group = {_text(k): _text(v) for k, v in group.items()}
        result.append(
            {
                "name": group.get("name"),
                "consumers": group.get("consumers"),
                "pending": group.get("pending"),
                # Redis 7+: entries not yet delivered to the group (None when Redis cannot tell).
                "lag": group.get("lag"),
                "last_delivered_id": group.get("last-delivered-id"),
            }
        )
    return result


def stream_status(client: Any, keys: StreamKeys) -> dict[str, Any]:
    """The figures of one stream, read now from Redis (the server's clock gives the lag).

    The stream's keys are read in one pipelined round trip (one hash slot, so on a cluster too).
    """
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.state)
    pipe.zcard(keys.seen)
    pipe.xlen(keys.stream)
    pipe.xinfo_groups(keys.stream)
    state, seen_size, stream_length, groups = pipe.execute(raise_on_error=False)
    for reply in (state, seen_size, stream_length):
        if isinstance(reply, Exception):
            raise reply
    fields = {_text(k): _text(v) for k, v in state.items()}
    seconds, micros = client.time()
    now_us = int(seconds) * 1_000_000 + int(micros)
    watermark = fields.get("watermark")
    watermark_us = int(watermark) if watermark else None
    return {
        "stream": keys.stream,
        "watermark": None if watermark_us is None else _iso(watermark_us),
        "watermark_us": watermark_us,
        "lag_seconds": None if watermark_us is None else round((now_us - watermark_us) / 1e6, 3),
        "seen_size": int(seen_size),
        "stream_length": int(stream_length),
        "groups": _groups(groups),
        "last_cycle": _json_field(fields, "last_cycle"),
        "last_replay": _json_field(fields, "last_replay"),
        "last_reset": _json_field(fields, "last_reset"),
        "snapshot": {k: v for k, v in fields.items() if k.startswith("snapshot_")} or None,
        "checked_at": _iso(now_us),
    }


def record_status(client: Any, keys: StreamKeys) -> dict[str, Any]:
    """Keep the live figures in ``<tag>:state`` so dashboards read one hash (done after each cycle)."""
    status = stream_status(client, keys)
    kept = {k: status[k] for k in ("lag_seconds", "seen_size", "stream_length", "groups", "checked_at")}
    client.hset(keys.state, STATUS_FIELD, json.dumps(kept))
    return status


def _iso(epoch_us: int) -> str:
    return datetime.fromtimestamp(epoch_us / 1e6, UTC).isoformat(timespec="microseconds")


def format_status(status: dict[str, Any]) -> str:
    """The human form of the status command's output: one figure per line."""
    lines = [
        f"stream:         {status['stream']}",
        f"watermark:      {status['watermark'] or '(none yet: the next cycle is a first cycle)'}",
        f"lag:            {_seconds(status['lag_seconds'])}",
        f"seen size:      {status['seen_size']}",
        f"stream length:  {status['stream_length']}",
    ]
    cycle = status.get("last_cycle")
    if isinstance(cycle, dict):
        lines.append(
            "last cycle:     "
            + " ".join(
                f"{name}={cycle.get(name)}"
                for name in (
                    "rows_read",
                    "emitted",
                    "duplicates",
                    "deletes",
                    "lag_seconds",
                    "duration_seconds",
                )
                if name in cycle
            )
        )
        lines.append(f"                window=[{cycle.get('window_start')}, {cycle.get('window_end')})")
        lines.append(f"                finished_at={cycle.get('finished_at')}")
    else:
        lines.append("last cycle:     (none recorded)")
    if status.get("snapshot"):
        lines.append("snapshot:       " + " ".join(f"{k[9:]}={v}" for k, v in status["snapshot"].items()))
    for name in ("last_replay", "last_reset"):
        value = status.get(name)
        if isinstance(value, dict):
            label = name.replace("_", " ") + ":"
            lines.append(f"{label:<16}" + " ".join(f"{k}={v}" for k, v in value.items()))
    groups = status.get("groups") or []
    if not groups:
        lines.append("groups:         (no consumer group)")
    for group in groups:
        lag = "unknown" if group["lag"] is None else group["lag"]
        lines.append(
            f"group {group['name']}: pending={group['pending']} lag={lag} "
            f"consumers={group['consumers']} last_delivered_id={group['last_delivered_id']}"
        )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "(unknown)" if value is None else f"{value:.3f} s"
