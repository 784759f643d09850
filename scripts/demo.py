"""The local demo: seed a customers table, run the example DAG's cycles, print the stream.

Runs against this machine's Postgres (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379),
with connections given as AIRFLOW_CONN_* variables and a throwaway Airflow home in .airflow-demo/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = {"host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": os.environ.get("DEMO_PG_DB", "test")}
REDIS_DB = int(os.environ.get("DEMO_REDIS_DB", "0"))
REDIS = {"host": "127.0.0.1", "port": 6379, "extra": {"db": REDIS_DB}}

os.environ.update(
    AIRFLOW_HOME=str(ROOT / ".airflow-demo"),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW_CONN_CRM_DB=json.dumps({"conn_type": "postgres", **PG}),
    AIRFLOW_CONN_REDIS_DEFAULT=json.dumps({"conn_type": "redis", **REDIS}),
)


def main() -> int:
    import pendulum
    import psycopg
    import redis

    db = psycopg.connect(f"host={PG['host']} port={PG['port']} user={PG['login']} dbname={PG['schema']}",
                         autocommit=True)  # fmt: skip
    db.execute((ROOT / "dags/sql/seed_customers.sql").read_text())
    print(f"source: {db.execute('SELECT count(*) FROM customers').fetchone()[0]} rows in customers")

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    sys.path.insert(0, str(ROOT / "dags"))
    from customers_to_stream import dag

    for task in dag.tasks:  # the demo shows a failure at once instead of waiting for retries
        task.retries = 0

    logical_date = pendulum.now("UTC").start_of("minute")
    run = dag.test(logical_date=logical_date)
    print(f"cycle 1 (DAG run {run.run_id}): {run.state}")

    db.execute(
        "UPDATE customers SET tier = 'platinum', balance = balance + 100, updated_at = clock_timestamp() "
        "WHERE id IN (SELECT id FROM customers ORDER BY random() LIMIT 3)"
    )
    run = dag.test(logical_date=logical_date.add(minutes=1))
    print(f"cycle 2 after changing 3 customers (DAG run {run.run_id}): {run.state}")

    client = redis.Redis(host=REDIS["host"], port=REDIS["port"], db=REDIS_DB, decode_responses=True)
    print(f"\nstream `customers`: {client.xlen('customers')} messages; the newest 3:")
    for message_id, fields in client.xrevrange("customers", count=3):
        print(f"  {message_id}  pkey={fields['pkey']} epoch={fields['epoch']} variant={fields['variant']}")
        print(f"      payload={fields['payload']}")
    state = client.hgetall("{customers}:state")
    print(f"\nstate: watermark={state.get('watermark')} last cycle={state.get('last_cycle')}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
