from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.core.epoch import (
    datetime_to_us,
    load_timezone,
    to_epoch_us,
    us_to_datetime,
    us_to_number,
    us_to_text,
)
from airflow_dbstream.core.errors import DbStreamInputError

PARIS = ZoneInfo("Europe/Paris")


def test_aware_datetime_is_exact_to_the_microsecond():
    value = datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    assert to_epoch_us(value, UTC, None) == 1_772_366_400_999_999
    assert us_to_datetime(1_772_366_400_999_999) == value


def test_naive_datetime_is_read_in_the_source_timezone():
    naive = datetime(2026, 7, 1, 14, 0)
    assert to_epoch_us(naive, PARIS, None) == datetime_to_us(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), UTC)


def test_offsets_do_not_change_the_instant():
    plus_two = datetime(2026, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_epoch_us(plus_two, UTC, None) == to_epoch_us(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), UTC, None)


def test_date_is_midnight_in_the_source_timezone():
    assert to_epoch_us(date(2026, 1, 2), PARIS, None) == datetime_to_us(
        datetime(2026, 1, 1, 23, 0, tzinfo=UTC), UTC
    )


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1_700_000_000, "s", 1_700_000_000_000_000),
        (1_700_000_000_123, "ms", 1_700_000_000_123_000),
        (Decimal("1700000000.000001"), "s", 1_700_000_000_000_001),
        ("1700000000", "s", 1_700_000_000_000_000),
        (2**62, "us", 2**62),
    ],
)
def test_numeric_epochs_in_their_unit(value, unit, expected):
    assert to_epoch_us(value, UTC, unit) == expected


def test_numeric_epoch_without_unit_says_what_to_set():
    with pytest.raises(TypeError, match="epoch_unit"):
        to_epoch_us(1_700_000_000, UTC, None)


def test_sqlite_text_timestamps():
    assert to_epoch_us("2026-01-01 00:00:01.5", UTC, None) == datetime_to_us(
        datetime(2026, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC), UTC
    )
    assert to_epoch_us("2026-01-01T00:00:00Z", UTC, None) == datetime_to_us(
        datetime(2026, 1, 1, tzinfo=UTC), UTC
    )


def test_text_bound_compares_as_text_with_stored_values():
    at = datetime_to_us(datetime(2026, 1, 1, 10, 0, 0, 300_000, tzinfo=UTC), UTC)
    bound = us_to_text(at, UTC)
    assert bound == "2026-01-01 10:00:00.3"
    assert bound <= "2026-01-01 10:00:00.300" and bound > "2026-01-01 10:00:00.2999"
    assert us_to_text(at - 300_000, UTC) == "2026-01-01 10:00:00"


def test_number_bounds_round_outwards():
    assert us_to_number(1_500_000, "s") == 1
    assert us_to_number(1_500_000, "s", round_up=True) == 2
    assert us_to_number(-1_500_000, "s") == -2


def test_unknown_timezone():
    with pytest.raises(DbStreamInputError, match="IANA"):
        load_timezone("Nowhere/Land")
