"""The transaction guard: hold the watermark while a transaction older than the window is still open.

A row that becomes visible after a cycle's read belongs to a transaction open at that read; stamped
by the database's clock, its epoch is at or after that transaction's start. So capping the watermark
at ``oldest_start + lookback`` keeps the next window's start at or before it: its rows are read
whenever they commit, however long it ran. ``lookback`` then covers only the writers' own clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

ON, OFF, BLIND, OVER_MAX_HOLD, SINGLE_WRITER = "on", "off", "blind", "over_max_hold", "single_writer"


@dataclass(frozen=True)
class OpenTransactions:
    """What the source showed of its other sessions' transactions, at the instant of its clock."""

    # ON: shown; OFF: the guard is off or the source cannot show them; BLIND: not to this user;
    # SINGLE_WRITER: none can commit behind the watermark (SQLite)
    visibility: str
    oldest_start_us: int | None = None  # start of the oldest that can still commit rows stamped before now
    start_unknown: bool = False  # one is open whose start is not shown (a prepared transaction)
    holder: str | None = None  # who holds the oldest: session, user, application, state (for the DBA)
    grant: str | None = None  # BLIND: the statement that lets the user see them


@dataclass(frozen=True)
class Hold:
    """The guard's decision for one commit."""

    state: str  # ON, OFF, BLIND or OVER_MAX_HOLD
    cap_us: int | None  # the watermark may not pass this (None: no cap)
    oldest_age_us: int | None  # how long the oldest open transaction has been open


def decide(
    seen: OpenTransactions, watermark_us: int | None, lookback_us: int, db_now_us: int, max_hold_us: int
) -> Hold:
    """Where the guard caps the next watermark, given the open transactions seen at the read.

    A transaction whose start is not shown keeps the window where it is (the watermark does not
    move): every cycle since it began saw it open, so none moved the watermark past its start.
    Past ``max_hold`` the guard stops holding, so a forgotten session cannot grow windows forever.
    """
    if seen.visibility != ON:
        return Hold(seen.visibility, None, None)
    floor = seen.oldest_start_us  # the lowest next window start the open transactions need
    if seen.start_unknown:
        unknown_floor = db_now_us - max_hold_us if watermark_us is None else watermark_us - lookback_us
        floor = unknown_floor if floor is None else min(floor, unknown_floor)
    if floor is None:
        return Hold(ON, None, None)
    age_us = db_now_us - floor
    if age_us > max_hold_us:
        return Hold(OVER_MAX_HOLD, None, age_us)
    return Hold(ON, floor + lookback_us, age_us)


def observed_lateness_us(
    previous_watermark_us: int | None, lowest_emitted_epoch_us: int | None
) -> int | None:
    """How far below the previous watermark the oldest row emitted now was stamped (None: not below)."""
    if previous_watermark_us is None or lowest_emitted_epoch_us is None:
        return None
    return max(0, previous_watermark_us - lowest_emitted_epoch_us)
