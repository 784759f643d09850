"""The trigger form of a streaming DAG as Airflow Params: replay a range, reset a stream, set start_from."""

from __future__ import annotations

from typing import Any

from airflow_dbstream.core.params import param_specs


def stream_params() -> dict[str, Any]:
    """The Params of a streaming DAG; scheduled runs take the defaults, i.e. an ordinary cycle."""
    from airflow.sdk import Param

    return {name: Param(spec.pop("default"), **spec) for name, spec in param_specs().items()}
