"""RedisStreamTrigger: fires when a Redis Stream's consumer group has entries, for AssetWatchers and sensors.

The trigger reads as a consumer of the group and never acknowledges what it fires: the task that does
the work acks the event's ids (operators/redis_stream_ack.py), so an entry stays in the group's pending
list until its work is done. Where each read comes from, in this order:

1. its own pending list (id ``0``), once at start: what this consumer was given before the triggerer
   restarted and nobody acked, fired again (the restart cannot tell whether it was fired already);
2. ``XAUTOCLAIM``: entries pending longer than ``min_idle`` in any consumer of the group (a dead
   consumer's, or a run of ours that failed and never acked), taken over and fired again;
3. ``XREADGROUP >``: new entries, blocking up to ``block`` at a time.

An event carries at most ``count`` entries and, past the first entry, at most ``max_bytes`` of field
names and values; what was read beyond that is fired next, from memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import redis.exceptions
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_dbstream.hooks.redis_client import async_client, client_args

CLASSPATH = "airflow_dbstream.triggers.redis_stream.RedisStreamTrigger"
DEFAULT_CONSUMER = "airflow"
RETRY_DELAYS = (1, 2, 5, 10, 30)  # seconds between reconnects while Redis is unreachable; the last repeats

Entry = tuple[str, dict[str, str]]


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def entry_size(entry: Entry) -> int:
    """Bytes of an entry's field names and values: what it adds to the event kept in Airflow's database."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in entry[1].items())


def take_batch(buffer: deque[Entry], count: int, max_bytes: int) -> list[Entry]:
    """The next event's entries: at least one, at most ``count`` and ``max_bytes`` (past the first)."""
    batch = [buffer.popleft()]
    size = entry_size(batch[0])
    while buffer and len(batch) < count:
        size += entry_size(buffer[0])
        if size > max_bytes:
            break
        batch.append(buffer.popleft())
    return batch


class RedisStreamTrigger(BaseEventTrigger):
    """
    Fires a TriggerEvent with the ids and fields of new entries of ``stream`` for consumer ``group``.

    :param stream: the stream's key.
    :param group: the consumer group; created at ``start_id`` (``0``: the whole stream, ``$``: only
        what arrives from now) if it does not exist.
    :param consumer: this reader's name in the group. Keep it stable (one per watcher or sensor task):
        a restarted trigger with the same name re-reads what it was given and nobody acked.
    :param redis_conn_id: a ``redis`` (or ``dbstream_redis``) connection; TLS, ACL user and cluster as
        for RedisHook.
    :param count: most entries per event.
    :param max_bytes: most bytes of field names and values per event (an entry larger alone is fired alone).
    :param min_idle: how long an entry stays pending, unacked, before it is taken over and fired again;
        longer than the slowest fire-to-ack of the consuming DAG. ``None``: never reclaim.
    :param block: longest wait of one XREADGROUP.
    :param start_id: where a group this trigger creates starts.
    :param fields: put the entries' fields in the event (default). ``False``: ids only, so no payload
        reaches Airflow's database or the triggerer's "Trigger fired event" log line; the consuming
        task reads the entries by id (``messages_of(context, client)``).
    """

    def __init__(
        self,
        stream: str,
        group: str,
        consumer: str = DEFAULT_CONSUMER,
        redis_conn_id: str = "redis_default",
        count: int = 100,
        max_bytes: int = 1_000_000,
        min_idle: float | timedelta | None = 600.0,
        block: float | timedelta = 5.0,
        start_id: str = "0",
        fields: bool = True,
    ) -> None:
        super().__init__()
        if count < 1 or max_bytes < 1:
            raise ValueError(f"RedisStreamTrigger on {stream!r}: count and max_bytes must be >= 1")
        self.stream, self.group, self.consumer = stream, group, consumer
        self.redis_conn_id = redis_conn_id
        self.count, self.max_bytes = int(count), int(max_bytes)
        self.min_idle = None if min_idle is None else _seconds(min_idle)
        self.block = _seconds(block)
        self.start_id = start_id
        self.fields = bool(fields)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "stream": self.stream,
                "group": self.group,
                "consumer": self.consumer,
                "redis_conn_id": self.redis_conn_id,
                "count": self.count,
                "max_bytes": self.max_bytes,
                "min_idle": self.min_idle,
                "block": self.block,
                "start_id": self.start_id,
                "fields": self.fields,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        conn = await BaseHook.aget_connection(self.redis_conn_id)
        args = client_args(conn, self.redis_conn_id)
        # A blocking read must not hit the socket timeout; decoded, the fields go into JSON as they are.
        client = async_client(args, decode_responses=True, socket_timeout=self.block + 10)
        reader = _Reader(self, client)
        try:
            while True:
                entries = await reader.next_entries()
                if entries:
                    yield TriggerEvent(self.payload(entries))
        finally:
            await client.aclose()

    def payload(self, entries: list[Entry]) -> dict[str, Any]:
        """What the event carries: enough for the ack task to ack it with no other input."""
        payload: dict[str, Any] = {
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "redis_conn_id": self.redis_conn_id,
            "ids": [entry_id for entry_id, _ in entries],
        }
        if self.fields:
            payload["messages"] = [{"id": entry_id, "fields": fields} for entry_id, fields in entries]
        return payload


class _Reader:
    """The three sources of a trigger's entries, in their order, with the batch bound and reconnects."""

    def __init__(self, trigger: RedisStreamTrigger, client: Any) -> None:
        self.t, self.client = trigger, client
        self.buffer: deque[Entry] = deque()
        self.own_pending: str | None = "0"  # cursor through our own pending list; None once read
        self.claim_cursor = "0-0"
        self.group_ready = False
        self.failures = 0

    async def next_entries(self) -> list[Entry]:
        """One event's entries, or [] when a blocking read timed out empty."""
        while not self.buffer:
            try:
                read = await self._read()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
                self.failures += 1
                self.t.log.warning(
                    "Redis stream %s unreachable (%s: %s); retrying in %ss",
                    self.t.stream, type(exc).__name__, exc, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # the stream or its group was deleted under us: made again at start_id, as at start
                self.t.log.warning(
                    "Stream %s has no group %s any more (%s); creating it again at %s",
                    self.t.stream, self.t.group, exc, self.t.start_id,
                )  # fmt: skip
                self.group_ready = False
                continue
            self.failures = 0
            if not read:
                return []
            self.buffer.extend(read)
        batch = take_batch(self.buffer, self.t.count, self.t.max_bytes)
        self.t.log.info(
            "Stream %s group %s: firing %d entries (%s..%s), %d read ahead",
            self.t.stream, self.t.group, len(batch), batch[0][0], batch[-1][0], len(self.buffer),
        )  # fmt: skip
        return batch

    async def _read(self) -> list[Entry]:
        t, client = self.t, self.client
        if not self.group_ready:
            try:
                await client.xgroup_create(t.stream, t.group, id=t.start_id, mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.group_ready = True
        if self.own_pending is not None:
            reply = await client.xreadgroup(t.group, t.consumer, {t.stream: self.own_pending}, count=t.count)
            entries = reply[0][1] if reply else []
            if entries:
                self.own_pending = entries[-1][0]
                return await self._drop_trimmed(entries, "pending")
            self.own_pending = None
        if t.min_idle is not None:
            min_idle_ms = int(t.min_idle * 1000)
            reply = await client.xautoclaim(
                t.stream, t.group, t.consumer, min_idle_ms, start_id=self.claim_cursor, count=t.count
            )
            self.claim_cursor = reply[0]
            claimed = [e for e in reply[1] if e[1] is not None]
            if len(reply) > 2 and reply[2]:
                t.log.warning(
                    "Stream %s group %s: %d pending entries were trimmed from the stream before any "
                    "consumer acked them; Redis dropped them from the pending list",
                    t.stream, t.group, len(reply[2]),
                )  # fmt: skip
            if claimed:
                t.log.info(
                    "Stream %s group %s: reclaimed %d entries pending over %ss", t.stream, t.group,
                    len(claimed), t.min_idle,
                )  # fmt: skip
                return claimed
        reply = await client.xreadgroup(
            t.group, t.consumer, {t.stream: ">"}, count=t.count, block=max(1, int(t.block * 1000))
        )
        return reply[0][1] if reply else []

    async def _drop_trimmed(self, entries: list[Any], where: str) -> list[Entry]:
        """Pending entries trimmed from the stream come back without fields: nothing to do, so acked."""
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            await self.client.xack(self.t.stream, self.t.group, *gone)
            self.t.log.warning(
                "Stream %s group %s: %d %s entries were trimmed from the stream before they were acked "
                "(first %s); acked them, there is nothing left to deliver",
                self.t.stream, self.t.group, len(gone), where, gone[0],
            )  # fmt: skip
        return [(entry_id, fields) for entry_id, fields in entries if fields]
