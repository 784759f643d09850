"""Consume the `customers` stream in Airflow: a DAG run per batch of new messages, acked at its end.

- customers_consumer: scheduled on the Asset `customers_stream`, whose AssetWatcher runs a
  RedisStreamTrigger in the triggerer (consumer group `crm_view`). Each trigger event (at most 500
  messages, 1 MB) becomes an asset event, and the run it triggers applies the messages to a live view
  in Redis (`customers:view`, one hash field per customer), then acks them. A run that fails acks
  nothing: its messages are fired again after `min_idle` (10 minutes), and the view skips any version
  it already holds, by (pkey, epoch), so applying a message twice changes nothing.
- customers_wait_for_changes: the same inside a run, for DAGs that wait at one step: a deferrable
  RedisStreamSensor (group `crm_audit`), the work, then the ack of the sensor's event.

Connections: redis_default, the Redis the `customers` stream is in (customers_to_stream writes it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.redis.hooks.redis import RedisHook
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_dbstream.operators.redis_stream_ack import RedisStreamAckOperator, messages_of
from airflow_dbstream.sensors.redis_stream import RedisStreamSensor
from airflow_dbstream.triggers.redis_stream import RedisStreamTrigger

VIEW, VIEW_EPOCHS = "customers:view", "customers:view:epoch"

customers_stream = Asset(
    name="customers_stream",
    uri="redis+stream://redis_default/customers",
    watchers=[
        AssetWatcher(
            name="customers_stream_crm_view",
            trigger=RedisStreamTrigger(
                stream="customers",
                group="crm_view",
                consumer="airflow-crm-view",  # stable: a restarted triggerer re-reads its own pending
                redis_conn_id="redis_default",
                count=500,
                max_bytes=1_000_000,
                min_idle=timedelta(minutes=10),  # longer than a run of customers_consumer takes
            ),
        )
    ],
)


def apply_to_view(client: Any, messages: list[dict[str, Any]]) -> dict[str, int]:
    """Upsert or delete each customer in the view, unless the view holds that version or a newer one."""
    applied = skipped = 0
    for message in messages:
        fields = message["fields"]
        pkey, epoch = fields["pkey"], int(fields["epoch"])
        held = client.hget(VIEW_EPOCHS, pkey)
        if held is not None and int(held) >= epoch:
            skipped += 1  # a redelivery, or an older version arriving after a newer one
            continue
        pipe = client.pipeline(transaction=True)
        if fields.get("op") == "delete":
            pipe.hdel(VIEW, pkey)
        else:
            pipe.hset(VIEW, pkey, fields["payload"])
        pipe.hset(VIEW_EPOCHS, pkey, epoch)
        pipe.execute()
        applied += 1
    return {"applied": applied, "skipped": skipped}


with DAG(
    dag_id="customers_consumer",
    description="Apply the new messages of the `customers` stream to a live view, then ack them",
    schedule=[customers_stream],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs apply in the order the messages were fired
    tags=["dbstream", "consumer"],
):

    @task
    def apply(**context: Any) -> dict[str, int]:
        client = RedisHook("redis_default").get_conn()
        return apply_to_view(client, messages_of(context, client))

    apply() >> RedisStreamAckOperator(task_id="ack")


with DAG(
    dag_id="customers_wait_for_changes",
    description="Wait for new messages of the `customers` stream inside a run, count them, ack them",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one consumer name for the sensor (<dag_id>.<task_id>)
    tags=["dbstream", "consumer"],
):
    wait = RedisStreamSensor(
        task_id="wait_for_customers",
        stream="customers",
        group="crm_audit",
        redis_conn_id="redis_default",
        count=500,
        timeout=timedelta(hours=1),
    )

    @task
    def audit(event: dict[str, Any]) -> dict[str, int]:
        deletes = sum(1 for m in event["messages"] if m["fields"].get("op") == "delete")
        return {"messages": len(event["messages"]), "deletes": deletes}

    audit(wait.output) >> RedisStreamAckOperator(task_id="ack", event=wait.output)
