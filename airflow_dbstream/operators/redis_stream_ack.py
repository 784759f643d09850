"""RedisStreamAckOperator: acknowledges the entries a RedisStreamTrigger fired, once their work is done.

Put it last in the DAG that consumes them (downstream of every task doing the work, trigger rule
``all_success``): an entry is acked only by a run that did its work, so a failed run leaves its entries
pending, to be fired again after the trigger's ``min_idle``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_dbstream.hooks.redis_stream import RedisStreamHook

ACK_CHUNK = 1000  # ids per XACK


def events_of(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trigger events that created this run: the payloads of its triggering asset events."""
    events: list[dict[str, Any]] = []
    triggering = context.get("triggering_asset_events") or {}
    for asset in triggering:
        for asset_event in triggering[asset]:
            payload = (asset_event.extra or {}).get("payload")
            if isinstance(payload, dict) and "ids" in payload and "stream" in payload:
                events.append(payload)
    return events


def messages_of(context: Mapping[str, Any], client: Any = None) -> list[dict[str, Any]]:
    """The messages of this run's trigger events, each once, in stream (id) order within a stream.

    Events of a trigger made with ``fields=False`` carry ids only: their entries are read from Redis
    with ``client`` (an entry trimmed from the stream since is left out).
    """
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events_of(context):
        messages = event.get("messages")
        if messages is None:
            messages = read_entries(client, event["stream"], event["ids"])
        for message in messages:
            seen.setdefault((event["stream"], message["id"]), message)
    ordered = sorted(seen.items(), key=lambda item: (item[0][0], *map(int, item[0][1].split("-"))))
    return [message for _, message in ordered]


def read_entries(client: Any, stream: str, ids: list[str]) -> list[dict[str, Any]]:
    if client is None:
        raise ValueError(
            f"The events of stream {stream!r} carry ids only (RedisStreamTrigger(fields=False)): pass a "
            "Redis client to messages_of(context, client) to read their entries"
        )
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(stream, entry_id, entry_id)
    decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    return [
        {"id": decode(entry_id), "fields": {decode(k): decode(v) for k, v in fields.items()}}
        for found in pipe.execute()
        for entry_id, fields in found
    ]


def ids_by_group(events: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """Each (connection, stream, group)'s ids, each once (an event can reach a run through an alias too)."""
    grouped: dict[tuple[str, str, str], dict[str, None]] = defaultdict(dict)
    for event in events:
        key = (event.get("redis_conn_id") or "redis_default", event["stream"], event["group"])
        grouped[key].update(dict.fromkeys(event["ids"]))
    return {key: list(ids) for key, ids in grouped.items()}


class RedisStreamAckOperator(BaseOperator):
    """
    XACKs the ids of RedisStreamTrigger events: the given ``event`` (a sensor's output, one event or a
    list) or, by default, the events of the assets that triggered this run.

    :param event: a RedisStreamTrigger event payload or a list of them (e.g. ``sensor.output``);
        ``None``: the payloads of ``triggering_asset_events``.
    :param redis_conn_id: overrides the connection the events name.
    """

    template_fields = ("event",)

    def __init__(self, *, event: Any = None, redis_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.redis_conn_id = redis_conn_id

    def execute(self, context: Context) -> dict[str, int]:
        if self.event is None:
            events = events_of(context)
            where = "triggering asset events"
        else:
            events = self.event if isinstance(self.event, list) else [self.event]
            where = "the event given"
        if not events:
            raise ValueError(
                f"{self.task_id}: no RedisStreamTrigger event in {where}; this task acks the entries a "
                "RedisStreamTrigger fired, so put it in a DAG scheduled on an Asset watched by one, or "
                "pass event=<sensor>.output"
            )
        acked = total = 0
        for (conn_id, stream, group), ids in ids_by_group(events).items():
            client = RedisStreamHook(self.redis_conn_id or conn_id).get_conn()
            done = sum(
                int(client.xack(stream, group, *ids[i : i + ACK_CHUNK]))
                for i in range(0, len(ids), ACK_CHUNK)
            )
            self.log.info(
                "Acked %d of %d entries of stream %s group %s (%d were acked already)",
                done, len(ids), stream, group, len(ids) - done,
            )  # fmt: skip
            acked, total = acked + done, total + len(ids)
        return {"acked": acked, "ids": total, "events": len(events)}
