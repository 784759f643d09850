"""Downstream work scheduled on the `customers` stream as an Airflow Asset (docs/assets.md).

Runs after a cycle of customers_to_stream / customers_continuous (or a replay, or a reconcile's
tombstones) appended messages to the stream, never after a quiet cycle. The triggering events' extra
says what changed: how many messages, up to which entry id of the stream, the watermark.

stream_asset() reads the redis_default connection (host, port, db) where this file is parsed, to
name the same Asset the operators emit: redis://host:port/db/customers.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_dbstream.operators.assets import stream_asset

customers = stream_asset("customers", redis_conn_id="redis_default")

with DAG(
    dag_id="customers_changed",
    description="Runs after new messages reached the Redis stream `customers`",
    schedule=[customers],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dbstream", "example"],
) as dag:

    @task
    def what_changed(*, triggering_asset_events=None) -> list[dict]:
        """The figures of every cycle that triggered this run (several when runs came close together)."""
        changes = [event.extra for event in (triggering_asset_events or {}).get(customers, [])]
        for extra in changes:
            print(
                f"stream {extra['stream']}: {extra['emitted']} new messages ({extra['action']}), "
                f"up to entry {extra['last_entry_id']}, watermark {extra.get('watermark')}"
            )
        return changes

    what_changed()
