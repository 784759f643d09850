"""Latency of continuous mode: from a row's COMMIT on Postgres to its XADD on Redis.

A writer commits single-row updates at random moments while SqlToRedisStreamOperator runs in
continuous mode (run_for, poll_interval); the stream entry's ID carries Redis's clock at XADD
(milliseconds, same machine), and a consumer's XREAD BLOCK gives the time it could be read.
The target: p95 of commit -> XADD <= poll_interval + 100 ms.

    .venv/bin/python benchmarks/latency.py --duration 30 --poll-interval 1
    .venv/bin/python benchmarks/latency.py --duration 5 --poll-interval 0.25 --json

Uses this machine's Postgres (database `test`, a throwaway table) and Redis db 11 (a throwaway
stream, deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dbstream-latency-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault(
    "AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR"
)  # an INFO line per cycle would drown the figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of measured writes")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the operator's poll_interval (s)")
    parser.add_argument("--rate", type=float, default=5.0, help="commits per second (random arrivals)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the table")
    parser.add_argument("--lookback", type=float, default=60.0, help="the operator's lookback (s)")
    parser.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even when p95 misses the target")
    args = parser.parse_args(argv)

    import psycopg
    import redis

    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    table = f"latency_{uuid.uuid4().hex[:10]}"
    stream = f"bench:latency:{uuid.uuid4().hex[:8]}"
    dsn = dict(part.split("=", 1) for part in args.pg_dsn.split())
    source = {"conn_type": "postgres", "host": dsn.get("host", "127.0.0.1"),
              "port": int(dsn.get("port", 5432)), "login": dsn.get("user", "postgres"),
              "schema": dsn.get("dbname", "test")}  # fmt: skip
    if "password" in dsn:
        source["password"] = dsn["password"]
    os.environ["AIRFLOW_CONN_LATENCY_SOURCE"] = json.dumps(source)
    os.environ["AIRFLOW_CONN_LATENCY_TARGET"] = json.dumps(
        {
            "conn_type": "redis",
            "host": args.redis_host,
            "port": args.redis_port,
            "extra": {"db": args.redis_db},
        }
    )
    admin = psycopg.connect(args.pg_dsn, autocommit=True)
    admin.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    admin.execute(f"CREATE INDEX ON {table} (updated_at)")
    admin.execute(
        f"INSERT INTO {table} (id, name, updated_at) SELECT g, 'row ' || g, now() - interval '1 hour' "
        f"FROM generate_series(1, {args.rows}) g"
    )
    client = redis.Redis(host=args.redis_host, port=args.redis_port, db=args.redis_db, decode_responses=True)
    warmup = 2.0
    operator = SqlToRedisStreamOperator(
        task_id="latency",
        sql_conn_id="latency_source",
        redis_conn_id="latency_target",
        sql=f"SELECT id, name, updated_at FROM {table} WHERE updated_at >= %(window_start)s",
        stream=stream,
        pkey_column="id",
        epoch_column="updated_at",
        lookback=timedelta(seconds=args.lookback),
        variant="latency.v1",
        run_for=timedelta(seconds=warmup + args.duration + 2 * args.poll_interval + 1),
        poll_interval=timedelta(seconds=args.poll_interval),
    )
    committed: dict[str, float] = {}  # token -> wall clock right after COMMIT returned
    received: dict[str, tuple[float, float]] = {}  # token -> (XADD time from the ID, XREAD time)
    result: dict = {}
    stop = threading.Event()

    def consume() -> None:
        last = "0"
        while not stop.is_set():
            for _key, entries in client.xread({stream: last}, block=100, count=1000) or []:
                now = time.time()
                for entry_id, fields in entries:
                    last = entry_id
                    token = json.loads(fields["payload"])["name"]
                    if token.startswith("t-"):
                        received[token] = (int(entry_id.split("-")[0]) / 1000, now)

    def write() -> None:
        rng = random.Random(7)
        with psycopg.connect(args.pg_dsn) as db:
            deadline = time.monotonic() + args.duration
            while time.monotonic() < deadline:
                time.sleep(rng.expovariate(args.rate))
                token = f"t-{uuid.uuid4().hex[:12]}"
                db.execute(f"UPDATE {table} SET name = %s, updated_at = clock_timestamp() WHERE id = %s",
                           (token, rng.randint(1, args.rows)))  # fmt: skip
                db.commit()
                committed[token] = time.time()

    runner = threading.Thread(target=lambda: result.update(operator.execute(context={})))
    consumer = threading.Thread(target=consume, daemon=True)
    try:
        runner.start()
        consumer.start()
        time.sleep(warmup)  # the first cycle is a snapshot of the whole table
        write()
        runner.join()
        time.sleep(0.3)
        stop.set()
        consumer.join(timeout=5)
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.close()
        tag = "{" + stream + "}"
        client.delete(stream, f"{tag}:seen", f"{tag}:digest", f"{tag}:state", f"{tag}:lock")

    to_xadd = [(received[t][0] - c) * 1000 for t, c in committed.items() if t in received]
    to_read = [(received[t][1] - c) * 1000 for t, c in committed.items() if t in received]
    missing = [t for t in committed if t not in received]
    target_ms = args.poll_interval * 1000 + 100
    figures = {
        "poll_interval_ms": args.poll_interval * 1000,
        "commits": len(committed),
        "delivered": len(to_xadd),
        "missing": len(missing),
        "cycles": result.get("cycles"),
        "commit_to_xadd_ms": _summary(to_xadd),
        "commit_to_xread_ms": _summary(to_read),
        "target_p95_ms": target_ms,
    }
    ok = bool(to_xadd) and not missing and figures["commit_to_xadd_ms"]["p95"] <= target_ms
    figures["ok"] = ok
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['commits']} commits at ~{args.rate}/s over {args.duration:.0f} s, "
              f"poll_interval {args.poll_interval * 1000:.0f} ms, {figures['cycles']} cycles, "
              f"{figures['missing']} missing")  # fmt: skip
        for name in ("commit_to_xadd_ms", "commit_to_xread_ms"):
            s = figures[name]
            print(f"  {name:<20} p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}  p99 {s['p99']:7.1f}  "
                  f"max {s['max']:7.1f}  mean {s['mean']:7.1f}")  # fmt: skip
        print(f"  target: p95 commit -> XADD <= {target_ms:.0f} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok or args.no_check else 1


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return dict.fromkeys(("p50", "p95", "p99", "max", "mean"), float("nan"))
    return {
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


if __name__ == "__main__":
    sys.exit(main())
