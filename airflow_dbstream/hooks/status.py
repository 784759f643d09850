"""A stream's status: watermark, lag, sizes, the last cycle and each consumer group's backlog.

Every cycle records these figures in ``<tag>:state`` (field ``status``); the status command reads
them live. Only cheap O(1) Redis calls: HGETALL of a small hash, TIME, ZCARD, XLEN, XINFO GROUPS (and
the dead-letter stream's XLEN: always for the status command, after a cycle only for a stream that
dead-letters, so a stream with ``on_bad_row="fail"`` sends what it always sent).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import redis

from airflow_dbstream.core import keys as fields_of
from airflow_dbstream.core.figures import freshness, iso, json_field, lag_seconds
from airflow_dbstream.core.keys import StreamKeys, parse_watermark, stream_of_state_key


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _groups(reply: Any) -> list[dict[str, Any]]:
    """XINFO GROUPS' reply, or the error it gave in a pipeline (no such key: no groups yet)."""
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


def stream_status(client: Any, keys: StreamKeys, *, dead_letters: bool = True) -> dict[str, Any]:
    """The figures of one stream, read now from Redis (the server's clock gives the lag).

    The stream's keys are read in one pipelined round trip (one hash slot, so on a cluster too).
    ``dead_letters``: read the length of ``<tag>:dead`` too (``dead_length``, else None).
    """
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.state)
    pipe.zcard(keys.seen)
    pipe.xlen(keys.stream)
    pipe.xinfo_groups(keys.stream)
    if dead_letters:
        pipe.xlen(keys.dead)
    state, seen_size, stream_length, groups, *dead = pipe.execute(raise_on_error=False)
    for reply in (state, seen_size, stream_length, *dead):
        if isinstance(reply, Exception):
            raise reply
    fields = {_text(k): _text(v) for k, v in state.items()}
    seconds, micros = client.time()
    now_us = int(seconds) * 1_000_000 + int(micros)
    watermark_us = parse_watermark(fields.get(fields_of.WATERMARK))
    return {
        "stream": keys.stream,
        "watermark": iso(watermark_us),
        "watermark_us": watermark_us,
        "lag_seconds": lag_seconds(watermark_us, now_us),
        **freshness(json_field(fields, fields_of.LAST_CYCLE), watermark_us, now_us),
        "seen_size": int(seen_size),
        "stream_length": int(stream_length),
        "dead_length": int(dead[0]) if dead else None,
        "dead_stream": keys.dead,
        "groups": _groups(groups),
        "last_cycle": json_field(fields, fields_of.LAST_CYCLE),
        "last_replay": json_field(fields, fields_of.LAST_REPLAY),
        "last_reset": json_field(fields, fields_of.LAST_RESET),
        "snapshot": {k: v for k, v in fields.items() if k.startswith(fields_of.SNAPSHOT_PREFIX)} or None,
        "checked_at": iso(now_us),
    }


def find_streams(client: Any, pattern: str = "*") -> list[str]:
    """The streams whose name matches the glob ``pattern``, found by their ``<tag>:state`` hashes (SCAN).

    Two SCANs with a MATCH each: ``{pattern}:state`` (streams without a hash tag of their own) and
    ``pattern:state`` (those with one); every key found is checked back against its stream's keys.
    """
    found: set[str] = set()
    for match in ("{" + pattern + "}:state", pattern + ":state"):
        for key in client.scan_iter(match=match, count=1000, _type="hash"):
            stream = stream_of_state_key(_text(key))
            if stream is not None and fnmatchcase(stream, pattern):
                found.add(stream)
    return sorted(found)


def record_status(client: Any, keys: StreamKeys, *, dead_letters: bool = False) -> dict[str, Any]:
    """Keep the live figures in ``<tag>:state`` so dashboards read one hash (done after each cycle)."""
    status = stream_status(client, keys, dead_letters=dead_letters)
    names = ("lag_seconds", "freshness_seconds", "data_age_seconds", "seen_size", "stream_length", "groups",
             "checked_at")  # fmt: skip
    kept = {k: status[k] for k in names}
    if dead_letters:
        kept["dead_length"] = status["dead_length"]
    client.hset(keys.state, fields_of.STATUS, json.dumps(kept))
    return status
