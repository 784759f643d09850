"""A cycle's figures as Airflow metrics, through Airflow's own stats (StatsD or OpenTelemetry, as the
deployment's ``[metrics]`` section configures; nothing is sent where metrics are off)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

COUNTERS = ("rows_read", "emitted", "duplicates", "deletes", "dead_lettered")
GAUGES = (
    "lag_seconds", "guard_held_seconds", "oldest_transaction_age_seconds", "observed_lateness_seconds",
    "dead_length",  # the length of <tag>:dead, for a stream with on_bad_row="dead_letter"
)  # fmt: skip


def _stats() -> Any:
    try:
        from airflow.sdk.observability import stats
    except ImportError:  # Airflow before the task SDK's observability module
        from airflow.stats import Stats as stats
    return stats


def stream_tag(stream: str) -> str:
    """The stream's key as a metric tag: StatsD names allow letters, digits, '_', '.' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", stream)


def emit_cycle_metrics(figures: dict[str, Any]) -> None:
    """Counters per cycle, gauges of its data age and guard, and its duration as a timer, each tagged
    with the stream. ``dbstream.freshness_seconds`` is the time from the cycle's read to its commit."""
    stats, tags = _stats(), {"stream": stream_tag(figures["stream"])}
    for name in COUNTERS:
        stats.incr(f"dbstream.{name}", figures.get(name) or 0, tags=tags)
    for name in GAUGES:
        if figures.get(name) is not None:
            stats.gauge(f"dbstream.{name}", figures[name], tags=tags)
    stats.gauge("dbstream.freshness_seconds", figures["duration_seconds"], tags=tags)
    stats.timing("dbstream.cycle_duration", timedelta(seconds=figures["duration_seconds"]), tags=tags)
