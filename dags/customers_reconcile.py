"""Once a day, find the customers deleted from the CRM and send one `op=delete` tombstone each.

Hard deletes leave nothing for a polling query to see, so this DAG compares the source's current
keys with the keys the `customers` stream carries (`{customers}:keys`, kept because the streaming
DAGs set track_keys=True). Its cost is a full scan of the table's key column per run, so it runs
daily, off-peak. Keys emitted within `lookback` of the run wait for the next run.

The key scan runs beside the streaming cycles; the tombstones are sent under the stream's cycle
lock, after any running cycle (lock_wait), so none of them can overtake a late upsert.

Connections: crm_db (any common-sql connection), redis_default (the redis provider's connection).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_dbstream.operators.reconcile_deletes import ReconcileDeletesOperator

with DAG(
    dag_id="customers_reconcile",
    description="Tombstone the customers hard-deleted from crm_db in the Redis stream `customers`",
    schedule="30 3 * * *",  # daily, off-peak: each run reads every key of the table
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["dbstream", "example"],
) as dag:
    ReconcileDeletesOperator(
        task_id="reconcile_customers",
        sql_conn_id="crm_db",
        redis_conn_id="redis_default",
        sql="SELECT id FROM customers",  # every key currently in the source; an index-only scan
        stream="customers",
        pkey_column="id",
        lookback=timedelta(minutes=15),  # the stream's lookback: CUSTOMERS in customers_to_stream.py
        variant="customer.v1",
        maxlen=1_000_000,
        batch_size=10_000,  # keys per fetch and per Redis call: bounds the worker's memory
        max_deletes=10_000,  # stop, sending nothing, if the key query suddenly returns far fewer keys
        execution_timeout=timedelta(hours=1),
    )
