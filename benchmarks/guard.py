"""Benchmark: a long lookback against a short one with the transaction guard, side by side, one writer.

A steady writer updates rows of one Postgres table (each row once, so every committed version must
reach each stream exactly once), and in the middle holds one transaction open for ``--hold``
seconds, its update stamped by ``now()`` (the transaction's start). Two streams read the same
table, their cycles alternating, started about 1 s apart:

  a  today's way: the guard off, ``lookback`` long enough to catch the held transaction
  b  ``lookback`` of 2 s with the transaction guard

Reports rows read per cycle in steady state and during the hold, and versions lost and duplicated
against the writer's own log of committed versions. Goal: both lose nothing, and b reads at least
10x fewer rows per steady-state cycle than a.

Run: ``.venv/bin/python benchmarks/guard.py`` (3 minutes, 200 updates/s, a 30 s hold, a: 45 s
lookback), or ``--seconds 30 --hold 8 --rate 100 --long-lookback 12`` for a smoke run. Writes JSON
to ``--out`` (default benchmarks/results/guard.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
PG = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}
REDIS = {"conn_type": "redis", "host": "127.0.0.1", "port": 6379}
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180, help="how long the writer writes (default 180)")
    parser.add_argument("--rate", type=float, default=200, help="updates per second (default 200)")
    parser.add_argument(
        "--hold", type=float, default=30, help="seconds the transaction stays open (default 30)"
    )
    parser.add_argument("--long-lookback", type=float, default=45, help="lookback of stream a (default 45 s)")
    parser.add_argument("--short-lookback", type=float, default=2, help="lookback of stream b (default 2 s)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "guard.json", help="the JSON written")
    return parser.parse_args(argv)


class Writer:
    """Updates row after row at a steady rate (autocommit), logging each committed version."""

    def __init__(self, table: str, rows: int, rate: float) -> None:
        import psycopg

        self.db = psycopg.connect(DSN, autocommit=True)
        self.table, self.rows, self.rate = table, rows, rate
        self.log: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.next_id = 1

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and self.next_id < self.rows:
            pkey, name = self.next_id, f"w{self.next_id}"
            self.db.execute(
                f"UPDATE {self.table} SET name = %s, updated_at = now() WHERE id = %s", (name, pkey)
            )
            self.log.append((str(pkey), name))
            self.next_id += 1
            time.sleep(max(0.0, started + self.next_id / self.rate - time.monotonic()))

    def hold(self, seconds: float, pkey: int) -> None:
        """One transaction: its update is stamped at its start, and it commits ``seconds`` later."""
        import psycopg

        with psycopg.connect(DSN) as held:
            held.execute(f"UPDATE {self.table} SET name = 'held', updated_at = now() WHERE id = %s", (pkey,))
            time.sleep(seconds)
            held.commit()
        self.log.append((str(pkey), "held"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    import redis

    os.environ["AIRFLOW_CONN_GUARD_PG"] = json.dumps(PG)
    os.environ["AIRFLOW_CONN_GUARD_REDIS"] = json.dumps(REDIS)
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    run_id = uuid.uuid4().hex[:8]
    table = f"guard_{run_id}"
    rows = int(args.seconds * args.rate) + 10
    held_key = rows  # a row the writer never reaches: only the held transaction changes it
    db = psycopg.connect(DSN, autocommit=True)
    client = redis.Redis(host=REDIS["host"], port=REDIS["port"])
    db.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL)"
    )
    db.execute(
        f"INSERT INTO {table} SELECT i, 'v0', now() - interval '1 hour' FROM generate_series(1, {rows}) i"
    )
    streams = {"a": f"guard:{run_id}:a", "b": f"guard:{run_id}:b"}
    settings = {
        "a": {"lookback": timedelta(seconds=args.long_lookback), "transaction_guard": False},
        "b": {"lookback": timedelta(seconds=args.short_lookback), "transaction_guard": None},
    }
    sql = f"SELECT id, name, updated_at FROM {table} WHERE updated_at >= %(window_start)s"

    def cycle(name: str) -> dict[str, Any]:
        operator = SqlToRedisStreamOperator(
            task_id=f"guard_{name}", sql_conn_id="guard_pg", redis_conn_id="guard_redis", sql=sql,
            stream=streams[name], pkey_column="id", epoch_column="updated_at", variant="guard.v1",
            **settings[name],
        )  # fmt: skip
        return operator.execute(context={})

    try:
        for name in streams:
            cycle(name)  # the first load, not counted
        writer = Writer(table, held_key, args.rate)
        writing = threading.Thread(target=writer.run, daemon=True)
        hold_at = args.seconds / 2 - args.hold / 2
        holding = threading.Timer(hold_at, writer.hold, (args.hold, held_key))
        started = time.monotonic()
        writing.start()
        holding.start()
        cycles: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        while time.monotonic() - started < args.seconds:
            tick = time.monotonic()
            for name in streams:
                figures = cycle(name)
                cycles[name].append({"t": round(tick - started, 2), "rows_read": figures["rows_read"],
                                     "guard_held_seconds": figures.get("guard_held_seconds")})  # fmt: skip
            time.sleep(max(0.0, tick + 1.0 - time.monotonic()))
        writer.stop.set()
        writing.join()
        holding.join()
        for _ in range(2):  # drain: the last changes and the held transaction's commit
            time.sleep(1.0)
            for name in streams:
                cycle(name)
        return report(args, cycles, writer.log, client, streams, hold_at)
    finally:
        db.execute(f"DROP TABLE IF EXISTS {table}")
        for key in streams.values():
            tag = "{" + key + "}"
            client.delete(key, *(f"{tag}:{k}" for k in ("seen", "digest", "state", "lock", "keys")))


def report(args, cycles, log, client, streams, hold_at) -> dict[str, Any]:
    committed = set(log)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "versions_committed": len(committed),
    }
    warmup = max(args.long_lookback, args.short_lookback) + 2  # before this, a's window is still filling
    for name, key in streams.items():
        versions = [
            (fields[b"pkey"].decode(), json.loads(fields[b"payload"])["name"])
            for _id, fields in client.xrange(key)
        ]
        written = [v for v in versions if v[1] != "v0"]  # the first load's versions are not the writer's
        during = [c["rows_read"] for c in cycles[name] if hold_at <= c["t"] < hold_at + args.hold]
        steady = [
            c["rows_read"]
            for c in cycles[name]
            if c["t"] >= warmup and not hold_at <= c["t"] < hold_at + args.hold + args.short_lookback + 2
        ]
        result[name] = {
            "lookback_seconds": args.long_lookback if name == "a" else args.short_lookback,
            "guard": name == "b",
            "cycles": len(cycles[name]),
            "rows_read_per_cycle_steady": statistics.median(steady) if steady else None,
            "rows_read_per_cycle_during_hold": statistics.median(during) if during else None,
            "max_rows_read_during_hold": max(during) if during else None,
            "max_guard_held_seconds": max((c["guard_held_seconds"] or 0) for c in cycles[name]),
            "lost": len(committed - set(written)),
            "duplicated": len(written) - len(set(written)),
            "held_version_emitted": sum(1 for v in written if v[1] == "held"),
        }
    a, b = result["a"]["rows_read_per_cycle_steady"], result["b"]["rows_read_per_cycle_steady"]
    result["steady_rows_ratio_a_over_b"] = round(a / b, 1) if a and b else None
    result["goal_met"] = bool(
        result["a"]["lost"] == result["b"]["lost"] == 0
        and result["a"]["duplicated"] == result["b"]["duplicated"] == 0
        and (result["steady_rows_ratio_a_over_b"] or 0) >= 10
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("a", "b"):
        r = result[name]
        print(
            f"{name}: lookback {r['lookback_seconds']} s guard={r['guard']}: rows/cycle steady "
            f"{r['rows_read_per_cycle_steady']}, during hold {r['rows_read_per_cycle_during_hold']} "
            f"(max {r['max_rows_read_during_hold']}); lost {r['lost']}, duplicated {r['duplicated']}, "
            f"held version emitted {r['held_version_emitted']}"
        )
    print(
        f"steady rows a/b: {result['steady_rows_ratio_a_over_b']}  goal met: {result['goal_met']}  "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
