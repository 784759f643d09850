"""What a cycle, a replay or the status command reports: figures as data, and their one-line texts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from airflow_dbstream.core.epoch import datetime_to_us, us_to_datetime
from airflow_dbstream.core.guard import Hold

CYCLE_COUNTS = ("rows_read", "emitted", "duplicates", "deletes", "dead_lettered")
GUARD_FIGURES = ("guard", "oldest_transaction_age_seconds", "guard_held_seconds", "observed_lateness_seconds")


def iso(epoch_us: int | None) -> str | None:
    """An epoch as ISO 8601 UTC text, exactly (no float on the way)."""
    return None if epoch_us is None else us_to_datetime(epoch_us).isoformat()


def lag_seconds(watermark_us: int | None, now_us: int) -> float | None:
    if watermark_us is None:
        return None
    return round((now_us - watermark_us) / 1_000_000, 3)


def freshness(last_cycle: Any, watermark_us: int | None, now_us: int) -> dict[str, float | None]:
    """How far behind the source the stream can be (the age of the last successful read: stays small
    on an idle table polled on time; the one to alert on), next to the data age (since the newest
    change committed, which grows on an idle table)."""
    read_at = last_cycle.get("window_end") if isinstance(last_cycle, dict) else None
    read_us = None if not read_at else datetime_to_us(datetime.fromisoformat(read_at), UTC)
    return {
        "freshness_seconds": None if read_us is None else round((now_us - read_us) / 1_000_000, 3),
        "data_age_seconds": lag_seconds(watermark_us, now_us),
    }


def json_field(fields: dict[str, str], name: str) -> Any:
    """A JSON figure kept in ``<tag>:state`` (last_cycle, ...), or the raw text if it is not JSON."""
    raw = fields.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def seconds(us: int | None) -> float | None:
    return None if us is None else round(us / 1_000_000, 3)


def cycle_figures(
    stream: str, done: Any, window: Any, watermark_us: int | None, end_us: int, started: float
) -> dict[str, Any]:
    """A cycle's figures, as XCom, the state's last_cycle and the INFO line carry them."""
    return {
        "stream": stream,
        **{name: getattr(done, name) for name in CYCLE_COUNTS},
        "window_start": iso(window.start_us),
        "window_end": iso(window.end_us),
        "watermark": iso(watermark_us),
        "lag_seconds": lag_seconds(watermark_us, end_us),
        "duration_seconds": round(time.monotonic() - started, 3),
    }


def guard_figures(hold: Hold, held_us: int, lateness_us: int | None) -> dict[str, Any]:
    """The transaction guard's figures: its state, the oldest open transaction's age, how far it held
    the watermark back, and how late the latest row of this cycle arrived."""
    return {
        "guard": hold.state,
        "oldest_transaction_age_seconds": seconds(hold.oldest_age_us),
        "guard_held_seconds": seconds(held_us),
        "observed_lateness_seconds": seconds(lateness_us),
    }


def cycle_line(figures: dict[str, Any], *, snapshot: bool) -> str:
    """The one INFO line of a cycle: its counts, window, watermark, lag, duration and the guard's figures."""
    guard = " ".join(f"{name}={figures[name]}" for name in GUARD_FIGURES if name in figures)
    return (
        f"Cycle of stream {figures['stream']}: rows_read={figures['rows_read']} emitted={figures['emitted']} "
        f"duplicates={figures['duplicates']} dead_lettered={figures.get('dead_lettered', 0)} "
        f"window=[{figures['window_start']}, {figures['window_end']}) "
        f"watermark={figures['watermark']} lag_seconds={figures['lag_seconds']} "
        f"duration_seconds={figures['duration_seconds']} {guard}" + (" (snapshot)" if snapshot else "")
    ).replace("  ", " ")


def failure_line(stream: str, pipeline: Any, window: Any, exc: BaseException) -> str:
    """The one ERROR line of a failed cycle: what it did, that nothing moved, what clearing does, why."""
    done = "before reading any row"
    if pipeline is not None:
        done = f"after reading {pipeline.rows_read} rows and appending {pipeline.emitted} messages"
    where = "" if window is None else f" [{iso(window.start_us)}, {iso(window.end_us)})"
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    return (
        f"Stream {stream}: the cycle failed {done}. The watermark did not move, so clearing this task "
        f"re-reads the same window{where} and appends only what is missing, without duplicates. "
        f"Cause ({type(exc).__name__}): {cause}"
    )


def replay_line(figures: dict[str, Any]) -> str:
    return (
        f"Replay of stream {figures['stream']}: rows_read={figures['rows_read']} "
        f"replayed={figures['replayed']} dead_lettered={figures.get('dead_lettered', 0)} "
        f"range=[{figures['replay_from']}, {figures['replay_to']}) "
        f"replay={figures['replay']} duration_seconds={figures['duration_seconds']}"
    )


def format_status(status: dict[str, Any]) -> str:
    """The human form of the status command's output: one figure per line."""
    lines = [
        f"stream:         {status['stream']}",
        f"watermark:      {status['watermark'] or '(none yet: the next cycle is a first cycle)'}",
        f"freshness:      {_seconds(status.get('freshness_seconds'))} (since the last successful read)",
        f"data age:       {_seconds(status.get('data_age_seconds'))} (since the newest change streamed)",
        f"seen size:      {status['seen_size']}",
        f"stream length:  {status['stream_length']}",
    ]
    if status.get("dead_length") is not None:
        lines.append(f"dead letters:   {status['dead_length']} (in {status.get('dead_stream')})")
    cycle = status.get("last_cycle")
    if isinstance(cycle, dict):
        lines.append(
            "last cycle:     "
            + " ".join(
                f"{name}={cycle.get(name)}"
                for name in (*CYCLE_COUNTS, "lag_seconds", "duration_seconds", *GUARD_FIGURES)
                if name in cycle
            )
        )
        lines.append(f"                window=[{cycle.get('window_start')}, {cycle.get('window_end')})")
        lines.append(f"                finished_at={cycle.get('finished_at')}")
    else:
        lines.append("last cycle:     (none recorded)")
    if status.get("snapshot"):
        lines.append("snapshot:       " + " ".join(f"{k[9:]}={v}" for k, v in status["snapshot"].items()))
    for name in ("last_replay", "last_reset"):
        value = status.get(name)
        if isinstance(value, dict):
            label = name.replace("_", " ") + ":"
            lines.append(f"{label:<16}" + " ".join(f"{k}={v}" for k, v in value.items()))
    groups = status.get("groups") or []
    if not groups:
        lines.append("groups:         (no consumer group)")
    for group in groups:
        lag = "unknown" if group["lag"] is None else group["lag"]
        lines.append(
            f"group {group['name']}: pending={group['pending']} lag={lag} "
            f"consumers={group['consumers']} last_delivered_id={group['last_delivered_id']}"
        )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "(unknown)" if value is None else f"{value:.3f} s"
