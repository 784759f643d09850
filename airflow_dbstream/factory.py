"""One DAG per source from a YAML file: the sources of many tables are data, not copied DAG code.

A file lists ``sources`` (and optional ``defaults`` merged into each); every source becomes a DAG
``<dag_id_prefix><name>`` running one SqlToRedisStreamOperator. A mistake in the file is raised
as a DbStreamInputError naming the file, the source and the key, so Airflow shows it as the DAG
file's import error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_dbstream.core.errors import DbStreamInputError

REQUIRED = ("name", "sql_conn_id", "sql", "stream", "pkey_column", "epoch_column", "lookback", "variant")
OPTIONAL = (
    "redis_conn_id", "schedule", "start_from", "maxlen", "batch_size", "parameters", "source_timezone",
    "epoch_unit", "run_for", "poll_interval", "retries", "retry_delay", "description", "tags",
    "execution_timeout", "paused", "snapshot_chunk_size", "deleted_column", "track_keys", "transaction_guard",
    "guard_max_hold", "pause_gc", "on_bad_row", "lock_lease", "lock_wait",
)  # fmt: skip
DAG_KEYS = ("schedule", "retries", "retry_delay", "description", "tags", "paused")
DURATIONS = (
    "lookback", "run_for", "poll_interval", "retry_delay", "execution_timeout", "guard_max_hold",
    "lock_lease", "lock_wait",
)  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def parse_duration(value: Any, where: str) -> timedelta:
    """``90`` (seconds), ``"500ms"``, ``"30s"``, ``"15m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise DbStreamInputError(f"{where}: {value!r} is not a duration; write e.g. 30s, 15m, 2h or 1d.")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def load_sources(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The file's sources with defaults merged and durations parsed, and its DAG-wide settings."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DbStreamInputError(f"{path}: cannot read the sources file: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("sources"), list):
        raise DbStreamInputError(f"{path}: expected a mapping with a `sources:` list.")
    unknown = set(document) - {"sources", "defaults", "dag_id_prefix", "start_date"}
    if unknown:
        raise DbStreamInputError(f"{path}: unknown top-level keys {sorted(unknown)}.")
    defaults = document.get("defaults") or {}
    settings = {
        "dag_id_prefix": str(document.get("dag_id_prefix", "stream_")),
        "start_date": document.get("start_date", "2026-01-01"),
    }
    sources, names = [], set()
    for index, raw in enumerate(document["sources"], start=1):
        if not isinstance(raw, Mapping):
            raise DbStreamInputError(f"{path}: source #{index} must be a mapping of keys.")
        spec = {**defaults, **raw}
        where = f"{path}: source {spec.get('name', f'#{index}')!r}"
        unknown = set(spec) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise DbStreamInputError(
                f"{where}: unknown keys {sorted(unknown)}; known: {REQUIRED + OPTIONAL}."
            )
        missing = [key for key in REQUIRED if spec.get(key) in (None, "")]
        if missing:
            raise DbStreamInputError(f"{where}: missing {missing}.")
        if not _NAME.match(str(spec["name"])) or spec["name"] in names:
            raise DbStreamInputError(f"{where}: name must be unique, letters, digits, '_', '.', '-'.")
        names.add(spec["name"])
        for key in DURATIONS:
            if spec.get(key) is not None:
                spec[key] = parse_duration(spec[key], f"{where}, {key}")
        schedule = spec.get("schedule", "1m")
        if isinstance(schedule, str) and _DURATION.match(schedule):
            schedule = parse_duration(schedule, f"{where}, schedule")
        spec["schedule"] = schedule
        if schedule == "@continuous" and spec.get("run_for") is None:
            raise DbStreamInputError(
                f"{where}: schedule @continuous needs run_for (how long each run cycles, e.g. 5m)."
            )
        sources.append(spec)
    return sources, settings


def dags_from_yaml(path: str | Path) -> dict[str, Any]:
    """Build the DAGs of a sources file; put the result in the DAG file's ``globals()``."""
    import pendulum
    from airflow.sdk import DAG

    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
    from airflow_dbstream.params import stream_params

    path = Path(path)
    sources, settings = load_sources(path)
    start_date = pendulum.parse(str(settings["start_date"]), tz="UTC")
    dags: dict[str, Any] = {}
    for spec in sources:
        dag_id = f"{settings['dag_id_prefix']}{spec['name']}"
        continuous = spec["schedule"] == "@continuous"
        dag = DAG(
            dag_id=dag_id,
            description=spec.get("description")
            or f"Stream {spec['name']} into Redis stream {spec['stream']}",
            schedule=spec["schedule"],
            start_date=start_date,
            catchup=False,
            max_active_runs=1,  # one cycle per stream at a time (@continuous requires it too)
            params=stream_params(),
            template_searchpath=[str(path.parent)],
            is_paused_upon_creation=spec.get("paused"),
            default_args={
                "retries": spec.get("retries", 3),
                "retry_delay": spec.get("retry_delay") or timedelta(seconds=20),
                "retry_exponential_backoff": True,
                "max_retry_delay": timedelta(minutes=5),
            },
            tags=["dbstream", *spec.get("tags", [])],
            auto_register=False,
        )
        operator_args = {key: spec[key] for key in (*REQUIRED[1:], *OPTIONAL) if key in spec}
        for key in DAG_KEYS:
            operator_args.pop(key, None)
        if isinstance(operator_args.get("start_from"), str):
            operator_args["start_from"] = pendulum.parse(operator_args["start_from"], tz="UTC")
        if continuous:
            operator_args.setdefault("poll_interval", timedelta(seconds=1))
        SqlToRedisStreamOperator(task_id=f"{spec['name']}_to_stream", dag=dag, **operator_args)
        dags[dag_id] = dag
    return dags
