"""Memory of one cycle over a large window: how much the worker process grows, per source database.

    .venv/bin/python benchmarks/memory.py                      # 1,000,000 rows on postgres, mariadb, sqlite
    .venv/bin/python benchmarks/memory.py --rows 200000 --sources mariadb --buffered

Each source gets a table of --rows rows (an id, a --width-character text and a timestamp), filled by
the database itself. A child process imports everything and runs one empty cycle (so imports and
connections are not counted), then one cycle whose window (start_from a day back) holds every row,
into a Redis stream capped at --maxlen. Its growth is its peak resident memory (VmHWM) minus its
resident memory before the cycle.
--buffered replaces the streaming cursor by fetchall(), to show what streaming saves.
Needs the servers of scripts/services.sh; Redis db 0 gets a uniquely named stream, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SOURCES = ("postgres", "mariadb", "sqlite")
CONNECTIONS = {
    "postgres": {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
                 "schema": "test"},
    "mariadb": {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": "test"},
}  # fmt: skip
REDIS = {"conn_type": "redis", "host": "127.0.0.1", "port": 6379}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _fill(kind: str, table: str, rows: int, width: int, sqlite_path: str) -> None:
    if kind == "postgres":
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as db:
            db.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, body text, updated_at timestamptz)")
            db.execute(
                f"INSERT INTO {table} SELECT g, repeat('x', %s), clock_timestamp() - g * interval '1 ms' "
                "FROM generate_series(1, %s) AS g",
                (width, rows),
            )
    elif kind == "mariadb":
        import MySQLdb

        db = MySQLdb.connect(host="127.0.0.1", user="root", passwd="", db="test", autocommit=True)
        with db.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, body TEXT, updated_at DATETIME(6))")
            cur.execute(
                f"INSERT INTO {table} SELECT seq, REPEAT('x', %s), "
                f"UTC_TIMESTAMP(6) - INTERVAL seq * 1000 MICROSECOND FROM seq_1_to_{int(rows)}",
                (width,),
            )
        db.close()
    else:
        db = sqlite3.connect(sqlite_path, isolation_level=None)
        db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)")
        db.execute(
            f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
            f"INSERT INTO {table} SELECT n, printf('%.*c', ?, 'x'), "
            "strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', n % 3600)) FROM g",
            (rows, width),
        )
        db.close()


def _drop(kind: str, table: str, sqlite_path: str) -> None:
    if kind == "postgres":
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {table}")
    elif kind == "mariadb":
        import MySQLdb

        db = MySQLdb.connect(host="127.0.0.1", user="root", passwd="", db="test", autocommit=True)
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()
    else:
        Path(sqlite_path).unlink(missing_ok=True)


def measure(kind: str, rows: int, *, width: int = 300, batch_size: int = 1000, maxlen: int = 10_000,
            buffered: bool = False) -> dict:  # fmt: skip
    """Fill a table, run one cycle over all of it in a child process, report the child's growth."""
    import redis

    table = f"bench_mem_{uuid.uuid4().hex[:10]}"
    stream = f"bench:mem:{uuid.uuid4().hex[:10]}"
    sqlite_path = os.path.join(tempfile.gettempdir(), f"{table}.sqlite")
    conn = CONNECTIONS.get(kind, {"conn_type": "sqlite", "host": sqlite_path})
    env = {
        **os.environ,
        "AIRFLOW_CONN_BENCH_SOURCE": json.dumps(conn),
        "AIRFLOW_CONN_BENCH_REDIS": json.dumps(REDIS),
        "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dbstream-bench-")),
    }
    placeholder = ":window_start" if kind == "sqlite" else "%(window_start)s"
    sql = f"SELECT id, body, updated_at FROM {table} WHERE updated_at >= {placeholder}"
    started = time.monotonic()
    try:
        _fill(kind, table, rows, width, sqlite_path)
        fill_seconds = time.monotonic() - started
        args = [sys.executable, __file__, "--child", kind, "--sql", sql, "--stream", stream,
                "--batch-size", str(batch_size), "--maxlen", str(maxlen)]  # fmt: skip
        proc = subprocess.run(args + (["--buffered"] if buffered else []), env=env, capture_output=True,
                              text=True, timeout=1800)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        _drop(kind, table, sqlite_path)
        tag = "{" + stream + "}"
        client = redis.Redis(host="127.0.0.1", port=6379)
        client.delete(stream, f"{tag}:seen", f"{tag}:digest", f"{tag}:state", f"{tag}:lock")
        client.delete(stream + ":warmup", *(f"{{{stream}:warmup}}:{k}" for k in ("seen", "digest", "state")))
    return {"source": kind, "rows": rows, "width": width, "buffered": buffered,
            "fill_seconds": round(fill_seconds, 1), **result}  # fmt: skip


def _child(kind: str, sql: str, stream: str, batch_size: int, maxlen: int, buffered: bool) -> None:
    import gc
    from datetime import UTC, datetime, timedelta

    from airflow_dbstream.cycle import sources
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    if buffered:

        def fetch_all(self, sql, parameters, batch_size):
            cursor = self.conn.cursor()
            cursor.execute(sql, parameters)
            rows = cursor.fetchall()
            columns = [d[0] for d in cursor.description]
            for i in range(0, len(rows), batch_size):
                yield columns, rows[i : i + batch_size]

        for cls in (sources.PostgresSource, sources.MySqlSource, sources.SqliteSource):
            cls.batches = fetch_all

    # One window over every row (start_from set: not the first load's chunked snapshot).
    start_from = datetime.now(UTC) - timedelta(days=1)

    def cycle(name: str, query: str) -> dict:
        return SqlToRedisStreamOperator(
            task_id="memory", sql_conn_id="bench_source", redis_conn_id="bench_redis", sql=query,
            stream=name, pkey_column="id", epoch_column="updated_at", lookback=timedelta(minutes=5),
            variant="bench.v1", batch_size=batch_size, maxlen=maxlen, start_from=start_from,
        ).execute(context={})  # fmt: skip

    cycle(stream + ":warmup", sql + " AND 1 = 0")  # imports, drivers, scripts, connections
    gc.collect()
    before_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    started = time.monotonic()
    figures = cycle(stream, sql)
    seconds = time.monotonic() - started
    peak_kb = _status_kb("VmHWM")
    print(json.dumps({
        "rows_read": figures["rows_read"], "emitted": figures["emitted"], "cycle_seconds": round(seconds, 1),
        "rows_per_second": round(figures["rows_read"] / seconds), "rss_before_mb": round(before_kb / 1024, 1),
        "peak_mb": round(peak_kb / 1024, 1), "growth_mb": round((peak_kb - before_kb) / 1024, 1),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--width", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--maxlen", type=int, default=10_000)
    parser.add_argument("--buffered", action="store_true")
    parser.add_argument("--limit-mb", type=float, default=150.0, help="exit 1 when a source grows more")
    parser.add_argument("--child", choices=SOURCES, help=argparse.SUPPRESS)
    parser.add_argument("--sql", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.sql, args.stream, args.batch_size, args.maxlen, args.buffered)
        return
    failed = False
    for kind in args.sources.split(","):
        result = measure(kind, args.rows, width=args.width, batch_size=args.batch_size, maxlen=args.maxlen,
                         buffered=args.buffered)  # fmt: skip
        result["within_limit"] = result["growth_mb"] <= args.limit_mb
        failed |= not result["within_limit"]
        print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
