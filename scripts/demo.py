"""The local demo: seed a customers table, run cycles of the example DAG while a writer changes rows.

Runs against this machine's Postgres (127.0.0.1:5432, database `test`), or a SQLite file in
.airflow-demo/ where no Postgres answers, and Redis (127.0.0.1:6379, db DEMO_REDIS_DB, default 0).
Connections are AIRFLOW_CONN_* variables; Airflow's home is the throwaway .airflow-demo/.
DEMO_SOURCE=sqlite uses the SQLite file even where Postgres answers.
Then prints the stream's newest messages and its status (`python -m airflow_dbstream status`).
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
    import pendulum
    import redis

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
    logical_date = pendulum.now("UTC").start_of("minute")
    try:
        for n in range(1, CYCLES + 1):
            if n > 1:
                time.sleep(2)  # let the writer change a few rows between cycles
            run = dag.test(logical_date=logical_date.add(minutes=n))
            print(f"cycle {n} (DAG run {run.run_id}): {run.state}")
            if run.state != "success":
                return 1
    finally:
        stop.set()
        changes.join(timeout=5)

    from airflow_dbstream.core.figures import format_status
    from airflow_dbstream.core.keys import StreamKeys
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook
    from airflow_dbstream.hooks.status import stream_status

    client = redis.Redis(host=REDIS["host"], port=REDIS["port"], db=REDIS_DB, decode_responses=True)
    print(f"\nstream `customers`: {client.xlen('customers')} messages; the newest 5:")
    for message_id, fields in client.xrevrange("customers", count=5):
        print(f"  {message_id}  pkey={fields['pkey']} epoch={fields['epoch']} variant={fields['variant']}")
        print(f"      payload={fields['payload']}")
    print("\n$ python -m airflow_dbstream status --redis-conn-id redis_default --stream customers")
    print(
        format_status(
            stream_status(RedisStreamHook("redis_default").get_conn(), StreamKeys.for_stream("customers"))
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
