"""RedisStreamHook: the redis provider's hook plus the stream's scripts and state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.providers.redis.hooks.redis import RedisHook

from airflow_dbstream.encoding import Message
from airflow_dbstream.keys import StreamKeys
from airflow_dbstream.scripts import SCRIPT_NAMES, script_source
from airflow_dbstream.window import trim_cutoff

TRIM_CHUNK = 1000


@dataclass(frozen=True)
class EmitResult:
    emitted: int
    duplicates: int


@dataclass(frozen=True)
class StreamState:
    """What ``<tag>:state`` holds: the committed watermark and the last cycle's figures."""

    watermark_us: int | None
    fields: dict[str, str]


class RedisStreamHook(RedisHook):
    """
    Emits batches through an atomic Lua script and keeps a stream's watermark.

    Uses the redis provider's ``redis`` connection type, so TLS, ACL user/password, ``db`` and the
    ``cluster`` extra work as they do for RedisHook. Scripts run by EVALSHA and are reloaded by
    redis-py's Script on NOSCRIPT (restart, failover, SCRIPT FLUSH).
    """

    conn_type = "dbstream_redis"  # declared in the provider info; `redis` connections work the same
    hook_name = "Redis Stream target (DB Stream)"

    def __init__(self, redis_conn_id: str = RedisHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(redis_conn_id=redis_conn_id, **kwargs)
        self._scripts: dict[str, Any] = {}

    def _script(self, name: str) -> Any:
        if not self._scripts:
            client = self.get_conn()
            self._scripts = {n: client.register_script(script_source(n)) for n in SCRIPT_NAMES}
        return self._scripts[name]

    def emit(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        messages: Sequence[Message],
        *,
        track_keys: bool = False,
        script: str = "emit",
    ) -> EmitResult:
        """One script call for the whole batch: dedup against ``seen``, then XADD what is new.

        ``script="delete"`` sends the batch as soft-delete tombstones (``op=delete``) instead.
        """
        if not messages:
            return EmitResult(0, 0)
        args: list[Any] = [variant, maxlen or 0]
        for m in messages:
            args += (m.pkey, m.epoch_us, m.digest, m.payload)
        script_keys = [keys.stream, keys.seen, keys.digest] + ([keys.keys] if track_keys else [])
        emitted, duplicates = self._script(script)(keys=script_keys, args=args)
        return EmitResult(int(emitted), int(duplicates))

    def read_state(self, keys: StreamKeys) -> StreamState:
        raw = self.get_conn().hgetall(keys.state)
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        watermark = fields.get("watermark")
        return StreamState(int(watermark) if watermark else None, fields)

    def commit(
        self,
        keys: StreamKeys,
        watermark_us: int | None,
        lookback_us: int,
        figures: Mapping[str, Any],
    ) -> int | None:
        """Move the watermark forward (never back), record the cycle, then trim ``seen``."""
        args: list[Any] = ["" if watermark_us is None else watermark_us]
        for field, value in figures.items():
            args += (field, "" if value is None else str(value))
        committed = self._script("commit")(keys=[keys.state], args=args)
        committed_us = int(committed) if committed else None
        if committed_us is not None:
            self.trim(keys, trim_cutoff(committed_us, lookback_us))
        return committed_us

    def trim(self, keys: StreamKeys, cutoff_us: int, chunk: int = TRIM_CHUNK) -> int:
        """Remove ``seen`` members scored below cutoff, ``chunk`` per call so Redis never stalls."""
        removed = 0
        while True:
            n = int(self._script("trim")(keys=[keys.seen, keys.digest], args=[cutoff_us, chunk]))
            removed += n
            if n < chunk:
                return removed

    def save_fields(self, keys: StreamKeys, fields: Mapping[str, Any]) -> None:
        """Record progress (the snapshot's cursor) in ``<tag>:state`` without touching the watermark."""
        self.get_conn().hset(keys.state, mapping={k: str(v) for k, v in fields.items()})

    def drop_fields(self, keys: StreamKeys, *names: str) -> None:
        self.get_conn().hdel(keys.state, *names)

    def mark_keys(self, keys: StreamKeys, pkeys: Sequence[str], at_us: int) -> None:
        """Reconcile: the tracked keys found in the source are known present at ``at_us``."""
        if pkeys:
            mapping = dict.fromkeys(pkeys, at_us)
            self.get_conn().zadd(keys.keys, mapping, xx=True, gt=True)

    def sweep(
        self, keys: StreamKeys, variant: str, maxlen: int | None, cutoff_us: int, chunk: int = TRIM_CHUNK
    ) -> int:
        """Reconcile: one tombstone per tracked key not known present since the cutoff, in chunks."""
        swept = 0
        script_keys = [keys.stream, keys.seen, keys.digest, keys.keys]
        while True:
            n = int(self._script("sweep")(keys=script_keys, args=[variant, maxlen or 0, cutoff_us, chunk]))
            swept += n
            if n < chunk:
                return swept
