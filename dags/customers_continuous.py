"""Continuously stream the CRM's customers into the `customers` stream: changes arrive within seconds.

Each run of this @continuous DAG cycles back to back for `run_for` (a poll_interval apart), then
the scheduler starts the next run at once. Trigger it with config to replay a time range, reset
the stream, or set where a first cycle starts (the form's Params).

It streams the same table into the same stream as customers_to_stream; unpause one of the two
(running both is safe, the dedup script sends each version once, but it is twice the work).

Connections: crm_db (any common-sql connection), redis_default (the redis provider's connection).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
from airflow_dbstream.params import stream_params

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
) as dag:
    SqlToRedisStreamOperator(
        task_id="customers_to_stream",
        sql_conn_id="crm_db",
        redis_conn_id="redis_default",
        sql="sql/customers_changed.sql",
        stream="customers",
        pkey_column="id",
        epoch_column="updated_at",
        lookback=timedelta(minutes=2),  # the demo's writers commit at once; size it to your database
        variant="customer.v1",
        maxlen=1_000_000,
        track_keys=True,  # keep the live keys for the customers_reconcile DAG (hard deletes)
        run_for=timedelta(minutes=5),  # then the next run starts; logs and XComs stay per run
        poll_interval=timedelta(seconds=1),
        execution_timeout=timedelta(minutes=10),
    )
