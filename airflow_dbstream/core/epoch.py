"""Epochs: a row's modification time as integer microseconds since the Unix epoch, UTC, exactly."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_FLOOR, Decimal
from itertools import repeat
from operator import floordiv, sub
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_dbstream.core.errors import DbStreamInputError

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
# The start of a full snapshot: early enough for any real modification time, late enough that
# converting it to any time zone stays inside datetime's range.
SNAPSHOT_START_US = (datetime(1, 1, 2, tzinfo=UTC) - UNIX_EPOCH) // ONE_MICROSECOND
# IANA names of UTC itself: a zone of one fixed offset, 0 (MySQL's time_zone takes '+00:00' for them).
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu",
                       "GMT", "Etc/GMT", "Etc/GMT+0", "Etc/GMT-0", "Etc/GMT0", "GMT0", "GMT+0", "GMT-0",
                       "Etc/Greenwich", "Greenwich"})  # fmt: skip


def load_timezone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DbStreamInputError(
            f"Unknown source_timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'."
        ) from None


def check_unit(unit: str | None) -> str | None:
    if unit is not None and unit not in MICROS_PER_UNIT:
        raise DbStreamInputError(f"Unknown epoch_unit {unit!r}: use one of 's', 'ms', 'us' or None.")
    return unit


def datetime_to_us(value: datetime, tz: tzinfo) -> int:
    """Exact integer arithmetic; a naive value is wall-clock time in ``tz`` (first of an ambiguous pair)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return (value - UNIX_EPOCH) // ONE_MICROSECOND


def microseconds_since(base: datetime, values: Iterable[datetime]) -> Iterator[int]:
    """``datetime_to_us`` for many values sharing ``base``'s awareness, in C-level maps."""
    return map(floordiv, map(sub, values, repeat(base)), repeat(ONE_MICROSECOND))


def us_to_datetime(epoch_us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=epoch_us)


def to_epoch_us(value: object, tz: tzinfo, unit: str | None) -> int:
    """Convert one epoch column value; raise TypeError/ValueError on what cannot be an epoch."""
    if isinstance(value, datetime):
        return datetime_to_us(value, tz)
    if isinstance(value, date):
        return datetime_to_us(datetime(value.year, value.month, value.day), tz)
    if isinstance(value, bool):
        raise TypeError("a boolean is not a modification time")
    if isinstance(value, int | float | Decimal):
        if unit is None:
            raise TypeError(
                f"numeric value {value!r} needs epoch_unit ('s', 'ms' or 'us') to say what it counts"
            )
        return _number_to_us(value, unit)
    if isinstance(value, str):
        text = value.strip()
        if unit is not None:
            return _number_to_us(Decimal(text), unit)
        return datetime_to_us(datetime.fromisoformat(text), tz)
    raise TypeError(f"a {type(value).__name__} is not a modification time")


def _number_to_us(value: int | float | Decimal, unit: str) -> int:
    factor = MICROS_PER_UNIT[unit]
    if isinstance(value, int):
        return value * factor
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite epoch")
    scaled = Decimal(value) * factor
    return int(scaled.to_integral_value(rounding=ROUND_FLOOR))


def us_to_number(epoch_us: int, unit: str, *, round_up: bool = False) -> int:
    """A window bound in the column's unit: floor for a start, ceiling for an end, so nothing is cut."""
    factor = MICROS_PER_UNIT[unit]
    return -((-epoch_us) // factor) if round_up else epoch_us // factor


def us_to_text(epoch_us: int, tz: tzinfo) -> str:
    """'YYYY-MM-DD HH:MM:SS[.f]' wall-clock time in tz; trailing zeros dropped so text compares right."""
    return naive_to_text(us_to_datetime(epoch_us).astimezone(tz).replace(tzinfo=None))


def naive_to_text(local: datetime) -> str:
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if local.microsecond:
        text += "." + f"{local.microsecond:06d}".rstrip("0")
    return text


def us_to_naive(epoch_us: int, tz: tzinfo) -> datetime:
    return us_to_datetime(epoch_us).astimezone(tz).replace(tzinfo=None)


def second_bound(epoch_us: int, *, is_end: bool = False) -> int:
    """Widen a bound to whole seconds: DATETIME(0)-like columns truncate, so a row of the start's second
    is stored before a fractional start; the window then starts at most one second earlier."""
    return -((-epoch_us) // SECOND_US) * SECOND_US if is_end else epoch_us // SECOND_US * SECOND_US


def us_to_naive_bound(epoch_us: int, tz: tzinfo, *, is_end: bool = False) -> datetime:
    """A window bound as naive wall-clock time in ``tz`` that no row of the window compares outside of.

    Wall clocks go back at a DST fall-back: a row written just after ``start`` can read earlier than
    ``start``'s own wall clock. So the start uses the smaller UTC offset of the day that follows it, the
    end the larger offset of the day before it, both widened to whole seconds. Reading more is harmless:
    the emit script drops what it has already seen.
    """
    near = epoch_us - DAY_US if is_end else epoch_us + DAY_US
    offsets = (_offset_us(epoch_us, tz), _offset_us(near, tz))
    local_us = epoch_us + (max(offsets) if is_end else min(offsets))
    return us_to_datetime(second_bound(local_us, is_end=is_end)).replace(tzinfo=None)


def bound_slack_us(start_us: int, tz: tzinfo, unit: str | None) -> int:
    """How far below ``start_us`` the epochs of rows a window bound at ``start_us`` returns can be.

    A numeric bound is floored to its unit; a datetime bound to the second, and a naive value in a
    DST fall-back hour is read as the earlier of its two instants. ``seen`` is trimmed this much lower,
    so a row re-read because of that widening is still recognised.
    """
    if unit is not None:
        return MICROS_PER_UNIT[unit]
    offsets = [_offset_us(start_us + shift, tz) for shift in (-DAY_US, 0, DAY_US)]
    return SECOND_US + max(offsets) - min(offsets)


def _offset_us(epoch_us: int, tz: tzinfo) -> int:
    offset = us_to_datetime(epoch_us).astimezone(tz).utcoffset()
    return 0 if offset is None else offset // ONE_MICROSECOND
