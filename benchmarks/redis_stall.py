"""Benchmark: no single script call stalls Redis, even with 1,000,000 members in `seen`.

Starts a redis-server of its own on a free 127.0.0.1 port, fills a stream's `seen` (and digests)
with N members, then times every script call of a cycle's Redis side through RedisStreamHook:
emit (batches of 1,000 rows, half already seen, half new), commit, and the trim that follows
(the whole of `seen` falls below the cutoff, removed 1,000 members per call). Durations come from
Redis's own SLOWLOG (slowlog-log-slower-than 0), so they are server time, not network time.

Run: ``.venv/bin/python benchmarks/redis_stall.py`` (1,000,000 members, about a minute), or
``--members 100000`` for a quick run. Exits non-zero when a call took longer than ``--limit-ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow_dbstream.core.keys import StreamKeys  # noqa: E402
from airflow_dbstream.core.rows import Message  # noqa: E402
from airflow_dbstream.hooks import lease  # noqa: E402
from airflow_dbstream.hooks.redis_stream import RedisStreamHook  # noqa: E402
from airflow_dbstream.hooks.scripts import FENCED_SCRIPTS, SCRIPT_NAMES, fenced_source, script_source  # noqa: E402

FILL_CHUNK = 10_000


def _script_names(client) -> dict[str, str]:
    """SHA -> script name, for reading SLOWLOG entries."""
    names = {}
    for name in SCRIPT_NAMES:
        names[client.script_load(script_source(name))] = name
    for name in FENCED_SCRIPTS:
        names[client.script_load(fenced_source(name))] = name
    return names


def fill_seen(client, keys: StreamKeys, members: int, epoch_us: int) -> None:
    """N members scored just below epoch_us, each with a 16-byte digest, in pipelined chunks."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, members, FILL_CHUNK):
        chunk = range(start, min(start + FILL_CHUNK, members))
        pipe.zadd(keys.seen, {f"k{i}": epoch_us - members + i for i in chunk})
        pipe.hset(keys.digest, mapping={f"k{i}": b"d" * 16 for i in chunk})
        pipe.execute()


def measure(redis_conn_id: str, client, members: int, batches: int = 20, batch_size: int = 1000) -> dict:
    """Fill `seen`, run emit/commit/trim through the hook, return SLOWLOG durations per script (µs)."""
    stream = f"stall:{members}"
    keys = StreamKeys.for_stream(stream)
    client.delete(keys.stream, keys.seen, keys.digest, keys.state, keys.lock)
    now_us = int(time.time() * 1e6)
    started = time.monotonic()
    fill_seen(client, keys, members, now_us - 3_600_000_000)
    fill_seconds = time.monotonic() - started
    names = _script_names(client)

    hook = RedisStreamHook(redis_conn_id)
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    payload = json.dumps({"id": 0, "name": "x" * 120, "balance": "12.50"}).encode()
    with lease.hold(hook, keys, lease_ms=60_000) as held:
        for b in range(batches):
            # half the batch already in `seen` (duplicates), half new
            messages = [
                Message(f"k{(b * batch_size + i) * 7 % members}" if i % 2 else f"new{b}-{i}",
                        now_us + b * batch_size + i, "e" * 32, payload)
                for i in range(batch_size)
            ]  # fmt: skip
            hook.emit(keys, "bench.v1", None, messages, lease=held)
        # the watermark moves past everything seen: trim removes all N old members, in chunks
        hook.commit(keys, now_us + batches * batch_size, 1, {"last_cycle": "{}"}, held)
    wall = time.monotonic() - started - fill_seconds

    per_script: dict[str, list[int]] = {}
    for entry in client.slowlog_get(100_000):
        args = [a.decode() if isinstance(a, bytes) else str(a) for a in entry["command"].split()[:2]]
        if args and args[0].upper() == "EVALSHA" and len(args) > 1:
            per_script.setdefault(names.get(args[1], args[1]), []).append(int(entry["duration"]))
    client.config_set("slowlog-log-slower-than", 10_000)
    left = client.zcard(keys.seen)
    client.delete(keys.stream, keys.seen, keys.digest, keys.state)
    return {
        "members": members,
        "fill_seconds": round(fill_seconds, 1),
        "cycle_seconds": round(wall, 2),
        "seen_left": left,
        "calls": {name: len(d) for name, d in per_script.items()},
        "emit_ms": [round(d / 1000, 1) for d in reversed(per_script.get("emit", []))],
        "max_ms": {name: round(max(d) / 1000, 2) for name, d in per_script.items()},
        "p99_ms": {name: round(sorted(d)[int(len(d) * 0.99)] / 1000, 2) for name, d in per_script.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--limit-ms", type=float, default=50.0)
    args = parser.parse_args()

    from tests.integration.redis_servers import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="dbstream-stall-"))).start()
    os.environ["AIRFLOW_CONN_REDIS_STALL"] = json.dumps(server.connection())
    try:
        result = measure("redis_stall", server.admin(), args.members, args.batches)
    finally:
        server.stop()
    print(json.dumps(result, indent=2))
    worst = max(result["max_ms"].values())
    print(f"longest script call: {worst} ms (limit {args.limit_ms} ms) with {args.members:,} members in seen")
    return 0 if worst <= args.limit_ms and result["seen_left"] < args.batches * 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
