"""Benchmark: the resumable first load of a big Postgres table, with the worker's memory over time.

    .venv/bin/python benchmarks/snapshot.py                 # 5,000,000 rows (about 5 minutes here)
    .venv/bin/python benchmarks/snapshot.py --rows 200000   # a quick look

It creates a database of its own on the Postgres of scripts/services.sh (dropped afterwards), fills a
customers-like table (index on (updated_at, id)), starts a private redis-server on a free loopback
port (stopped afterwards; the shared Redis is not touched), then runs SqlToRedisStreamOperator's
first cycle in this process while a thread samples the process's RSS. With --kill-at F the snapshot
runs first in a child process that is SIGKILLed once a fraction F of the rows is done, then resumes
here. It prints rows/s, RSS at each tenth of the snapshot, and what Redis holds at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = dict(host="127.0.0.1", port=5432, user="postgres")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the private redis-server did not start")


def fill(dsn: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(
            "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, "
            "tier text NOT NULL, balance numeric(12, 2) NOT NULL, updated_at timestamptz NOT NULL)"
        )
        db.execute(
            "INSERT INTO customers SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', "
            "(ARRAY['standard', 'gold', 'platinum'])[1 + g %% 3], round((g * 37 %% 10000) / 7.0, 2), "
            "now() - interval '30 days' + (g %% 2592000) * interval '1 second' "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        db.execute("CREATE INDEX customers_updated_id ON customers (updated_at, id)")
        db.execute("ANALYZE customers")


OPERATOR = dict(
    task_id="snapshot_benchmark",
    sql_conn_id="bench_db",
    redis_conn_id="bench_redis",
    sql="SELECT id, name, email, tier, balance, updated_at FROM customers "
    "WHERE updated_at >= %(window_start)s",
    stream="customers",
    pkey_column="id",
    epoch_column="updated_at",
    variant="customer.v1",
)
CHILD = """
import json, sys
from datetime import timedelta
from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
kwargs = json.loads(sys.argv[1])
SqlToRedisStreamOperator(lookback=timedelta(minutes=15), **kwargs).execute(context={})
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk", type=int, default=50_000, help="snapshot_chunk_size")
    parser.add_argument("--batch", type=int, default=2000, help="batch_size")
    parser.add_argument("--kill-at", type=float, default=None, help="SIGKILL a first run at this fraction")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dbstream-bench-"))
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow"))
    database = f"dbstream_snap_bench_{uuid.uuid4().hex[:8]}"
    import psycopg
    import redis

    admin = psycopg.connect(dbname="test", autocommit=True, **PG)
    admin.execute(f"CREATE DATABASE {database}")
    redis_proc, port = start_redis(workdir)
    try:
        dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={database}"
        started = time.monotonic()
        fill(dsn, args.rows)
        print(f"filled {args.rows:,} rows in {time.monotonic() - started:.1f} s")
        os.environ["AIRFLOW_CONN_BENCH_DB"] = json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": database,
            }
        )
        os.environ["AIRFLOW_CONN_BENCH_REDIS"] = json.dumps({"conn_type": "redis", "host": "127.0.0.1",
                                                             "port": port})  # fmt: skip
        client = redis.Redis(port=port)
        options = {**OPERATOR, "snapshot_chunk_size": args.chunk, "batch_size": args.batch}

        if args.kill_at:
            child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(options)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL)  # fmt: skip
            target = int(args.rows * args.kill_at)
            while int(client.hget("{customers}:state", "snapshot_rows") or 0) < target:
                if child.poll() is not None:
                    raise SystemExit("the first run ended before it could be killed")
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            child.wait()
            done = int(client.hget("{customers}:state", "snapshot_rows"))
            print(f"killed the first run after {done:,} rows; stream holds {client.xlen('customers'):,}")

        from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

        operator = SqlToRedisStreamOperator(lookback=timedelta(minutes=15), **options)
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def sample() -> None:
            sampler = redis.Redis(port=port)
            while not stop.is_set():
                done = int(sampler.hget("{customers}:state", "snapshot_rows") or 0)
                samples.append((done, rss_mb()))
                stop.wait(0.25)

        print(f"RSS before the run: {rss_mb():.0f} MB")
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        started = time.monotonic()
        figures = operator.execute(context={})
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()

        rate = figures["rows_read"] / elapsed
        print(f"rows read in this run: {figures['rows_read']:,}, emitted {figures['emitted']:,}, "
              f"duplicates {figures['duplicates']:,} in {elapsed:.1f} s = {rate:,.0f} rows/s")  # fmt: skip
        print("RSS during the snapshot (rows done -> MB):")
        for tenth in range(1, 11):
            mark = args.rows * tenth // 10
            at = [rss for done, rss in samples if done <= mark]
            if at:
                print(f"  {mark:>10,} rows: {at[-1]:6.0f} MB")
        print(f"  max RSS: {max(rss for _, rss in samples):.0f} MB")
        info = client.info("memory")
        print(f"Redis: stream length {client.xlen('customers'):,}, seen {client.zcard('{customers}:seen'):,} "
              f"members, used_memory {info['used_memory'] / 2**20:,.0f} MB")  # fmt: skip
        print(f"watermark: {figures['watermark']}")
    finally:
        redis_proc.terminate()
        redis_proc.wait()
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
