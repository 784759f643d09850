"""RedisStreamSensor: a task that waits, deferred in the triggerer, for entries of a Redis Stream group.

It returns the event (ids and messages) as its XCom and acknowledges nothing: a
RedisStreamAckOperator(event=sensor.output) at the end of the DAG acks once the work is done, so a
run that fails leaves its entries pending to be fired again (at least once). Acking here, before the
downstream tasks ran, would lose the entries of a run that then failed (at most once).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from airflow_dbstream.triggers.redis_stream import RedisStreamTrigger


class RedisStreamSensor(BaseSensorOperator):
    """
    Waits until ``group`` of ``stream`` has entries for this task, then returns them (see RedisStreamTrigger).

    :param consumer: the group's consumer name; default ``<dag_id>.<task_id>``, stable across runs and
        tries, so a new try first re-reads what an earlier one was given and did not ack. Runs of the
        DAG at once should use one consumer each (e.g. ``"{{ run_id }}"``, templated) or max_active_runs=1.
    Other parameters as for RedisStreamTrigger; ``timeout`` (seconds or timedelta) bounds the wait.
    """

    template_fields = ("stream", "group", "consumer")

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        consumer: str | None = None,
        redis_conn_id: str = "redis_default",
        count: int = 100,
        max_bytes: int = 1_000_000,
        min_idle: float | timedelta | None = 600.0,
        block: float | timedelta = 5.0,
        start_id: str = "0",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.trigger_args = {
            "redis_conn_id": redis_conn_id, "count": count, "max_bytes": max_bytes, "min_idle": min_idle,
            "block": block, "start_id": start_id,
        }  # fmt: skip

    def execute(self, context: Context) -> Any:
        consumer = self.consumer or f"{self.dag_id}.{self.task_id}"
        trigger = RedisStreamTrigger(self.stream, self.group, consumer, **self.trigger_args)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info(
            "Stream %s group %s: %d entries for consumer %s (%s..%s), to be acked downstream",
            event["stream"], event["group"], len(event["ids"]), event["consumer"], event["ids"][0],
            event["ids"][-1],
        )  # fmt: skip
        return event
