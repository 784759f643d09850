"""The worker's instructions per row of whole cycles, every thread counted (callgrind).

benchmarks/instructions.py counts each stage alone; this runs SqlToRedisStreamOperator.execute() as a
task would, on bench.py's table in this machine's Postgres and Redis, and counts everything the worker
process does meanwhile: the read-ahead and emitter threads, the hand-offs between them, the garbage
collector, redis-py and psycopg. Redis and Postgres are other processes and are not counted.

  changed      a window of rows all new to the stream (start_from before the oldest row)
  unchanged    the same window again: every row a duplicate
  first load   a fresh stream, no start_from: the chunked, resumable snapshot

Each figure is (the cycle's count - an idle cycle's count) / rows. Run:
``.venv/bin/python benchmarks/cycle_instructions.py`` (20,000 rows, about five minutes: Airflow's
imports run under valgrind too); ``--pause-gc`` runs the cycles with ``pause_gc=True``;
``--root DIR`` measures the package of another checkout (e.g. a ``git worktree`` of an earlier
revision) with this script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.instructions import DSN, bench_table, callgrind, measured  # noqa: E402

CYCLES = ("changed", "unchanged", "first load")


def child(table: str, pause_gc: bool, root: Path) -> None:
    sys.path.insert(0, str(root))  # before this checkout's own, which the imports above put first
    os.environ["AIRFLOW_CONN_DBSTREAM_CI_PG"] = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}
    )
    os.environ["AIRFLOW_CONN_DBSTREAM_CI_REDIS"] = json.dumps({"conn_type": "redis", "host": "127.0.0.1"})
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task.operators=error")
    import psycopg
    import redis

    import airflow_dbstream
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    assert Path(airflow_dbstream.__file__).is_relative_to(root), airflow_dbstream.__file__

    with psycopg.connect(DSN, autocommit=True) as db:
        low, high = db.execute(
            f"SELECT min(updated_at) - interval '1 hour', max(updated_at) + interval '1 hour' FROM {table}"
        ).fetchone()
    streams = [f"dbstream-ci:{uuid.uuid4().hex[:8]}" for _ in range(3)]

    def operator(stream: str, **extra: object) -> SqlToRedisStreamOperator:
        return SqlToRedisStreamOperator(
            task_id="cycle_instructions", sql_conn_id="dbstream_ci_pg", redis_conn_id="dbstream_ci_redis",
            sql=f"SELECT * FROM {table} WHERE updated_at >= %(window_start)s", stream=stream,
            pkey_column="id", epoch_column="updated_at", lookback=timedelta(days=1), variant="ci.v1",
            pause_gc=pause_gc, **extra,
        )  # fmt: skip

    idle = operator(streams[2], start_from=high)
    idle.execute(context={})  # the imports, the scripts' first load, the connections' first use
    window = operator(streams[0], start_from=low)
    measured(lambda: None)  # each call below ends with a dump: all threads since the dump before
    figures = [
        measured(lambda: idle.execute(context={})),
        measured(lambda: window.execute(context={})),
        measured(lambda: window.execute(context={})),
        measured(lambda: operator(streams[1]).execute(context={})),
    ]
    done = [(f["rows_read"], f["emitted"], f["duplicates"]) for f in figures]
    rows = done[1][0]
    assert done == [(0, 0, 0), (rows, rows, 0), (rows, 0, rows), (rows, rows, 0)], done
    client = redis.Redis()
    for stream in streams:
        tag = "{" + stream + "}"
        client.unlink(stream, *(f"{tag}:{k}" for k in ("seen", "digest", "state", "lock")))


def run(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the table (default 20000)")
    parser.add_argument("--pause-gc", action="store_true", help="run the cycles with pause_gc=True")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose package runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--no-valgrind", action="store_true", help="run the cycles only (CI's smoke run)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.pause_gc, args.root.resolve())
        return {}
    with bench_table(args.rows, "cycle_instr") as table:
        command = [sys.executable, __file__, "--child", table, "--root", str(args.root)]
        command += ["--pause-gc"] if args.pause_gc else []
        found = callgrind(["--dump-after=ffi_call"], command, valgrind=not args.no_valgrind)
    if args.no_valgrind:
        print("cycles ran (no counts without valgrind)")
        return {}
    _marker, idle, *cycles = found[-5:]
    per_row = {name: round((count - idle) / args.rows) for name, count in zip(CYCLES, cycles, strict=True)}
    result = {
        "rows": args.rows,
        "pause_gc": args.pause_gc,
        "idle_cycle": idle,
        "instructions_per_row": per_row,
    }
    print(f"worker instructions per row, every thread ({args.rows:,} rows of bench.py's table, idle cycle "
          f"{idle:,} subtracted{', pause_gc' if args.pause_gc else ''}; package of {args.root})")  # fmt: skip
    for name in CYCLES:
        print(f"  {name:12} {per_row[name]:>10,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    run()
