"""Redis key names of one stream: the stream key and its companions in the same hash slot."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_dbstream.core.errors import DbStreamInputError

_VALID_STREAM = re.compile(r"[\w.:{}\-/]{1,200}")


@dataclass(frozen=True)
class StreamKeys:
    """All keys of one stream; every script receives them in KEYS so they share one slot."""

    stream: str
    seen: str
    digest: str
    state: str
    lock: str
    keys: str  # live keys the stream carries (zset pkey -> epoch), kept when track_keys is on
    dead: str  # the dead-letter stream: rows that failed their checks (on_bad_row="dead_letter")
    dead_seen: str  # zset: identity of each bad version dead-lettered -> its epoch, trimmed like seen

    @classmethod
    def for_stream(cls, stream: str) -> StreamKeys:
        validate_stream_name(stream)
        tag = stream if _has_hash_tag(stream) else "{" + stream + "}"
        return cls(
            stream=stream,
            seen=f"{tag}:seen",
            digest=f"{tag}:digest",
            state=f"{tag}:state",
            lock=f"{tag}:lock",
            keys=f"{tag}:keys",
            dead=f"{tag}:dead",
            dead_seen=f"{tag}:dead_seen",
        )


def _has_hash_tag(stream: str) -> bool:
    """Redis hashes only the first {...} with a non-empty body; mirror that rule."""
    start = stream.find("{")
    if start < 0:
        return False
    end = stream.find("}", start + 1)
    return end > start + 1


def stream_of_state_key(key: str) -> str | None:
    """The stream whose ``<tag>:state`` hash ``key`` is (None: not a state key of any stream name).

    The inverse of ``StreamKeys.for_stream``: ``{orders}:state`` is the state of ``orders``,
    ``orders{eu}:state`` the state of ``orders{eu}``. (A stream literally named ``{orders}`` shares
    its companions with ``orders``; it is reported as ``orders``.)
    """
    if not key.endswith(":state"):
        return None
    tag = key[: -len(":state")]
    wrapped = tag.startswith("{") and tag.endswith("}") and not _has_hash_tag(tag[1:-1])
    stream = tag[1:-1] if wrapped else tag
    if not _VALID_STREAM.fullmatch(stream) or StreamKeys.for_stream(stream).state != key:
        return None
    return stream


def validate_stream_name(stream: str) -> None:
    if not isinstance(stream, str) or not _VALID_STREAM.fullmatch(stream):
        raise DbStreamInputError(
            f"Invalid stream name {stream!r}: use 1-200 characters among letters, digits, "
            "'_', '-', '.', ':', '/' and an optional '{hash tag}'."
        )


# Fields of <tag>:state. The watermark is integer microseconds; last_* hold JSON figures.
WATERMARK = "watermark"
LAST_CYCLE = "last_cycle"
LAST_REPLAY = "last_replay"
LAST_RESET = "last_reset"
STATUS = "status"
TRACK_KEYS = "track_keys"
DIGEST_FORMAT = "digest_format"  # what <tag>:digest holds (core/digest.FORMAT); absent: the old BLAKE2b
SNAPSHOT_PREFIX = "snapshot_"
# The first load's progress, kept until its watermark is committed (cycle/snapshot.py).
SNAPSHOT_STARTED, SNAPSHOT_CURSOR, SNAPSHOT_CURSOR_US, SNAPSHOT_ROWS, SNAPSHOT_TOTAL = (
    f"{SNAPSHOT_PREFIX}{name}" for name in ("started", "cursor", "cursor_us", "rows", "total")
)
SNAPSHOT_FIELDS = (SNAPSHOT_STARTED, SNAPSHOT_CURSOR, SNAPSHOT_CURSOR_US, SNAPSHOT_ROWS, SNAPSHOT_TOTAL)


def parse_watermark(value: str | bytes | None) -> int | None:
    """The state's watermark field as integer microseconds (None: no cycle has committed yet)."""
    return int(value) if value else None
