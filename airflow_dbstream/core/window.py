"""Window arithmetic of a cycle: where it starts and ends, where the watermark goes, what is trimmed."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_dbstream.core.epoch import SNAPSHOT_START_US


@dataclass(frozen=True)
class Window:
    """The rows a cycle reads: start inclusive, end = the source database's clock at cycle start."""

    start_us: int
    end_us: int
    snapshot: bool


def plan_window(
    watermark_us: int | None, lookback_us: int, start_from_us: int | None, db_now_us: int
) -> Window:
    if watermark_us is not None:
        return Window(start_us=watermark_us - lookback_us, end_us=db_now_us, snapshot=False)
    start = SNAPSHOT_START_US if start_from_us is None else start_from_us
    return Window(start_us=start, end_us=db_now_us, snapshot=start_from_us is None)


def next_watermark(
    watermark_us: int | None, max_epoch_read_us: int | None, db_now_us: int, cap_us: int | None = None
) -> int | None:
    """W := max(W, highest epoch read capped at the database's clock and at the guard's cap, if any);
    it never moves back."""
    candidates = [w for w in (watermark_us,) if w is not None]
    if max_epoch_read_us is not None:
        candidates.append(min(max_epoch_read_us, db_now_us, db_now_us if cap_us is None else cap_us))
    return max(candidates) if candidates else None


def trim_cutoff(watermark_us: int, lookback_us: int) -> int:
    """Members of ``seen`` strictly below this epoch can never be read again by a later window."""
    return watermark_us - lookback_us


def lag_seconds(watermark_us: int | None, db_now_us: int) -> float | None:
    if watermark_us is None:
        return None
    return round((db_now_us - watermark_us) / 1_000_000, 3)
