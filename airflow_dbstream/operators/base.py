"""What every operator on a stream shares: its StreamSpec, the templated fields, the cycle runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.cycle.runner import CycleRunner
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from airflow_dbstream.operators.assets import emit_event, stream_alias
from airflow_dbstream.operators.metrics import emit_cycle_metrics


class BadInputFailure(AirflowFailException, DbStreamInputError):
    """Bad input fails the task without Airflow's retries: a retry would read the same input again."""


class StreamOperator(BaseOperator):
    """An operator on one stream: the spec is checked at parse time and again once Airflow renders it."""

    template_fields: Sequence[str] = ("sql", "stream", "variant", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}

    def __init__(self, *, spec: StreamSpec, sql_conn_id: str, redis_conn_id: str, **kwargs: Any) -> None:
        # The stream's outlet: an alias, whose event (for the stream's Asset) is added only by a run
        # that appended something (operators/assets.py); outlets the author gives are kept.
        outlets = kwargs.pop("outlets", None) or []
        alias = stream_alias(spec.stream, redis_conn_id)
        kwargs["outlets"] = [*(outlets if isinstance(outlets, list | tuple) else [outlets]), alias]
        super().__init__(**kwargs)
        self.stream_alias = alias
        self.spec = spec
        # Airflow renders these in place before execute(); the spec takes the rendered values then.
        self.sql, self.stream, self.variant, self.parameters = (
            spec.sql,
            spec.stream,
            spec.variant,
            spec.parameters,
        )
        self.sql_conn_id = sql_conn_id
        self.redis_conn_id = redis_conn_id

    def execute(self, context: Any) -> Any:
        """``run_stream``, with bad input failing fast (no retry); transient faults keep the retries."""
        try:
            return self.run_stream(context)
        except DbStreamInputError as exc:
            if isinstance(exc, AirflowFailException):
                raise
            raise BadInputFailure(str(exc)) from exc

    def run_stream(self, context: Any) -> Any:
        raise NotImplementedError

    def announce(self, context: Any, runner: CycleRunner, extra: dict[str, Any] | None) -> None:
        """The stream's Asset event when this run appended something (``extra`` None: it did not)."""
        keys = runner.spec.keys
        emit_event(context, runner.redis, keys, self.redis_conn_id, self.stream_alias.name, extra, self.log)

    def rendered_spec(self, **changes: Any) -> StreamSpec:
        """The spec with the fields Airflow rendered (and what this run asked for), checked again."""
        rendered = {"sql": self.sql, "stream": self.stream, "variant": self.variant}
        return self.spec.rendered(**rendered, parameters=self.parameters or {}, **changes)

    def runner(self, **changes: Any) -> CycleRunner:
        """This run's cycle runner: the rendered spec, one Redis hook (one pool, scripts loaded once)."""
        redis = RedisStreamHook(self.redis_conn_id)
        return CycleRunner(
            self.rendered_spec(**changes), redis, self.sql_conn_id, self.log, emit_cycle_metrics
        )
