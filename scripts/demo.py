"""The local demo: seed a customers table, run cycles of the example DAG while a writer changes rows.

Runs against this machine's Postgres (127.0.0.1:5432, database `test`), or a SQLite file in
.airflow-demo/ where no Postgres answers, and Redis (127.0.0.1:6379, db DEMO_REDIS_DB, default 0).
Connections are AIRFLOW_CONN_* variables; Airflow's home is the throwaway .airflow-demo/.
DEMO_SOURCE=sqlite uses the SQLite file even where Postgres answers.
Then prints the stream's newest messages and its status (`python -m airflow_dbstream status`).
It prints its own lines: one per cycle (the figures the cycle recorded, and the DAG run's duration)
and a summary; Airflow's own INFO logging is off (WARNING and above still show), DEMO_VERBOSE=1 turns it on.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow-demo"
PG = {"host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": os.environ.get("DEMO_PG_DB", "test")}
PG_DSN = f"host={PG['host']} port={PG['port']} user={PG['login']} dbname={PG['schema']} connect_timeout=3"
REDIS_DB = int(os.environ.get("DEMO_REDIS_DB", "0"))
REDIS = {"host": "127.0.0.1", "port": 6379, "extra": {"db": REDIS_DB}}
SQLITE_FILE = HOME / "crm.sqlite"
SQLITE_SQL = """SELECT id, name, email, tier, balance, updated_at
FROM customers
WHERE updated_at >= :window_start
ORDER BY updated_at"""
CYCLES = 3

sys.path.insert(0, str(ROOT / "scripts"))
HOME.mkdir(exist_ok=True)
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW_CONN_REDIS_DEFAULT=json.dumps({"conn_type": "redis", **REDIS}),
)
if not os.environ.get("DEMO_VERBOSE"):
    # Airflow's INFO lines (DAG bundles, dag runs, task states: ~30 a run) would bury the demo's own.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"


def postgres_answers() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_DSN).close()
        return True
    except psycopg.OperationalError:
        return False


def seed_postgres() -> None:
    import psycopg
    from demo_writer import seed

    with psycopg.connect(PG_DSN) as db:
        seed(db, ROOT / "dags" / "sql")
        (count,) = db.execute("SELECT count(*) FROM customers").fetchone()
        print(f"source: Postgres {PG['schema']}, {count} customers")
    os.environ["AIRFLOW_CONN_CRM_DB"] = json.dumps({"conn_type": "postgres", **PG})


def _sqlite_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_sqlite() -> None:
    """The same customers in a SQLite file, timestamps as UTC text (as legacy SQLite apps keep them)."""
    db = sqlite3.connect(SQLITE_FILE)
    db.execute(
        "CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "email TEXT NOT NULL, tier TEXT NOT NULL, balance TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS customers_updated_at ON customers (updated_at)")
    start = datetime.now(UTC) - timedelta(days=1)
    db.executemany(
        "INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?, ?, ?)",
        [(g, f"Customer {g}", f"customer{g}@example.com", ["standard", "gold", "platinum"][g % 3],
          f"{g * 37 % 10000 / 7:.2f}", (start + timedelta(seconds=g)).strftime("%Y-%m-%d %H:%M:%S.%f"))
         for g in range(1, 1001)],
    )  # fmt: skip
    db.commit()
    print(f"source: SQLite {SQLITE_FILE} (DEMO_SOURCE=sqlite, or no Postgres answered), "
          f"{db.execute('SELECT count(*) FROM customers').fetchone()[0]} customers")  # fmt: skip
    db.close()
    os.environ["AIRFLOW_CONN_CRM_DB"] = json.dumps({"conn_type": "sqlite", "host": str(SQLITE_FILE)})


def writer(stop: threading.Event, on_postgres: bool) -> None:
    """The demo writer, changing a few customers (and orders on Postgres) every half second."""
    rng = random.Random()
    if on_postgres:
        import psycopg
        from demo_writer import one_round

        with psycopg.connect(PG_DSN) as db:
            while not stop.wait(0.5):
                one_round(db, rng)
        return
    db = sqlite3.connect(SQLITE_FILE)
    while not stop.wait(0.5):
        db.execute(
            "UPDATE customers SET tier = ?, balance = printf('%.2f', balance + ?), updated_at = ? "
            "WHERE id = ?",
            (rng.choice(["standard", "gold", "platinum"]), rng.uniform(-50, 50), _sqlite_now(),
             rng.randint(1, 1000)),
        )  # fmt: skip
        db.commit()
    db.close()


def main() -> int:
    import redis

    from airflow_dbstream.core.figures import CYCLE_COUNTS, cycle_line, format_status
    from airflow_dbstream.core.keys import LAST_CYCLE, StreamKeys
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook
    from airflow_dbstream.hooks.status import stream_status

    on_postgres = os.environ.get("DEMO_SOURCE") != "sqlite" and postgres_answers()
    seed_postgres() if on_postgres else seed_sqlite()
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    sys.path.insert(0, str(ROOT / "dags"))
    from customers_to_stream import dag

    for task in dag.tasks:
        task.retries = 0  # the demo shows a failure at once instead of waiting for retries
        if not on_postgres:
            task.sql = SQLITE_SQL

    stop = threading.Event()
    changes = threading.Thread(target=writer, args=(stop, on_postgres), daemon=True)
    changes.start()
    print("writer: changing a few customers every 0.5 s")
    client = redis.Redis(host=REDIS["host"], port=REDIS["port"], db=REDIS_DB, decode_responses=True)
    keys = StreamKeys.for_stream("customers")
    totals = dict.fromkeys(CYCLE_COUNTS, 0)
    try:
        for n in range(1, CYCLES + 1):
            if n > 1:
                time.sleep(2)  # let the writer change a few rows between cycles
            # No logical date: dag.test() then starts the run now (a logical date in the future
            # made Airflow report negative run durations).
            run = dag.test()
            took = (run.end_date - run.start_date).total_seconds()
            print(f"cycle {n}: DAG run {run.run_id} {run.state} in {took:.1f} s")
            if run.state != "success":
                print("  the task's log above says why (the cycle's ERROR line)")
                return 1
            figures = json.loads(client.hget(keys.state, LAST_CYCLE) or "{}")
            print("  " + cycle_line(figures, snapshot=False))
            for name in CYCLE_COUNTS:
                totals[name] += figures.get(name, 0)
    finally:
        stop.set()
        changes.join(timeout=5)

    print(f"\n{CYCLES} cycles: " + " ".join(f"{name}={value}" for name, value in totals.items()))
    print(f"\nstream `customers`: the newest 5 of {client.xlen('customers')} messages:")
    for message_id, fields in client.xrevrange("customers", count=5):
        print(f"  {message_id}  pkey={fields['pkey']} epoch={fields['epoch']} variant={fields['variant']}")
        print(f"      payload={fields['payload']}")
    print("\n$ python -m airflow_dbstream status --redis-conn-id redis_default --stream customers")
    print(format_status(stream_status(RedisStreamHook("redis_default").get_conn(), keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
