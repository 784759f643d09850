"""A consumer group that keeps a live view of a dbstream stream: upserts replace a row, deletes drop it.

    python examples/consumer.py customers            # REDIS_URL defaults to redis://127.0.0.1:6379/0

Messages carry `payload` (the row as JSON; `null` for a hard delete), `variant`, `epoch`, `pkey` and,
for deletes only, `op=delete`. Per key they arrive in epoch order, so applying them in stream order
is enough. A message is acknowledged after it is applied: after a crash the consumer first re-reads
its own pending messages (id "0"), then new ones (">"); applying one twice changes nothing.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import redis


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the group at the stream's start (id 0), so a new group sees the snapshot too."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def apply(view: dict[str, Any], fields: dict[str, str]) -> None:
    if fields.get("op") == "delete":
        view.pop(fields["pkey"], None)
    else:
        view[fields["pkey"]] = json.loads(fields["payload"])


def consume(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    view: dict[str, Any],
    *,
    block_ms: int = 5000,
    until_idle: bool = False,
) -> int:
    """Apply messages to ``view`` and acknowledge them; with ``until_idle``, return when none is left."""
    ensure_group(client, stream, group)
    applied = 0
    start = "0"  # our pending messages first: delivered before a crash but never acknowledged
    while True:
        reply = client.xreadgroup(group, consumer, {stream: start}, count=500, block=block_ms)
        entries = reply[0][1] if reply else []
        if not entries:
            if start == "0":
                start = ">"
                continue
            if until_idle:
                return applied
            continue
        for message_id, fields in entries:
            apply(view, fields)
            client.xack(stream, group, message_id)
            applied += 1


def main() -> None:
    stream = sys.argv[1] if len(sys.argv) > 1 else "customers"
    client = redis.Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True
    )
    view: dict[str, Any] = {}
    try:
        consume(client, stream, f"{stream}-view", socket.gethostname(), view)
    except KeyboardInterrupt:
        print(f"{len(view)} live rows in the view")


if __name__ == "__main__":
    main()
