"""Stream the CRM's customers table into the `customers` stream, two ways; unpause one of them.

- customers_to_stream: a cycle every minute.
- customers_continuous: @continuous; each run cycles back to back for `run_for` (a poll_interval
  apart), then the scheduler starts the next run at once: changes arrive within seconds.

Both write the same stream, so both take its settings from CUSTOMERS below: every writer of a
stream must agree on its keys and lookback (a writer with a shorter lookback trims `seen` below
another's window, which then sends those rows again). Running both is safe but twice the work.
Trigger either with config to replay a time range, reset the stream, or set where a first cycle
starts (the form's Params).

Connections (Admin > Connections, or AIRFLOW_CONN_* variables):
  crm_db         the source database (here Postgres; any common-sql connection works)
  redis_default  the target Redis (the redis provider's connection: TLS, ACL, cluster extras)
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
from airflow_dbstream.params import stream_params

# The `customers` stream, as every task writing to it sees it (customers_reconcile uses the same lookback).
CUSTOMERS = dict(
    task_id="customers_to_stream",
    sql_conn_id="crm_db",
    redis_conn_id="redis_default",
    sql="sql/customers_changed.sql",
    stream="customers",
    pkey_column="id",
    epoch_column="updated_at",
    lookback=timedelta(minutes=15),
    variant="customer.v1",
    start_from=None,  # first cycle: a full snapshot
    maxlen=1_000_000,
    track_keys=True,  # keep the live keys for the customers_reconcile DAG (hard deletes)
    batch_size=1000,
    source_timezone="UTC",
    execution_timeout=timedelta(minutes=10),
)

with DAG(
    dag_id="customers_to_stream",
    description="Poll crm_db.customers and append new or changed rows to the Redis stream `customers`",
    schedule=timedelta(minutes=1),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one cycle per stream at a time
    params=stream_params(),  # Trigger -> Run Parameters: replay a range, reset the stream, start_from
    is_paused_upon_creation=True,  # the demo stack runs customers_continuous on the same stream
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
    tags=["dbstream", "example"],
) as dag:
    SqlToRedisStreamOperator(**CUSTOMERS)

with DAG(
    dag_id="customers_continuous",
    description="Stream crm_db.customers into the Redis stream `customers` within seconds",
    schedule="@continuous",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # @continuous requires it; one cycle per stream at a time
    params=stream_params(),
    default_args={"retries": 3, "retry_delay": timedelta(seconds=5)},
    tags=["dbstream", "example"],
) as continuous_dag:
    SqlToRedisStreamOperator(
        **CUSTOMERS,
        run_for=timedelta(minutes=5),  # then the next run starts; logs and XComs stay per run
        poll_interval=timedelta(seconds=1),
    )
