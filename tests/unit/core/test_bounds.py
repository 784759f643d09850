"""Window bounds in the form a column needs: whole seconds, naive wall clocks across DST, the trim slack."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.core.epoch import (
    bound_slack_us,
    datetime_to_us,
    naive_to_text,
    second_bound,
    to_epoch_us,
    us_to_naive_bound,
)

PARIS = ZoneInfo("Europe/Paris")
ZONES = [ZoneInfo("UTC"), PARIS, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")]
# Fall-backs (UTC): Paris 2026-10-25 01:00, New York 2026-11-01 06:00, Lord Howe (30 min) 2026-04-04 15:00
TRANSITIONS = {
    "UTC": datetime(2026, 10, 25, 1, tzinfo=UTC),
    "Europe/Paris": datetime(2026, 10, 25, 1, tzinfo=UTC),
    "America/New_York": datetime(2026, 11, 1, 6, tzinfo=UTC),
    "Australia/Lord_Howe": datetime(2026, 4, 4, 15, tzinfo=UTC),
}


def us(at: datetime) -> int:
    return datetime_to_us(at, UTC)


def test_second_bound_widens_outwards():
    assert second_bound(1_500_000) == 1_000_000
    assert second_bound(1_500_000, is_end=True) == 2_000_000
    assert second_bound(2_000_000) == second_bound(2_000_000, is_end=True) == 2_000_000
    assert second_bound(-1) == -1_000_000


def test_naive_bound_away_from_transitions_is_the_wall_clock_to_the_second():
    at = us(datetime(2026, 7, 1, 12, 0, 0, 700_000, tzinfo=UTC))
    assert us_to_naive_bound(at, PARIS) == datetime(2026, 7, 1, 14, 0, 0)
    assert us_to_naive_bound(at, PARIS, is_end=True) == datetime(2026, 7, 1, 14, 0, 1)
    assert naive_to_text(us_to_naive_bound(at, UTC)) == "2026-07-01 12:00:00"


def test_start_before_a_fall_back_reads_from_the_winter_wall_clock():
    start = us(datetime(2026, 10, 25, 0, 40, tzinfo=UTC))  # 02:40 CEST; 02:00 CET comes 20 min later
    assert us_to_naive_bound(start, PARIS) == datetime(2026, 10, 25, 1, 40)


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_no_instant_inside_the_window_reads_outside_its_naive_bounds(zone):
    transition = TRANSITIONS[str(zone)]
    minutes = [transition + timedelta(minutes=m) for m in range(-150, 151, 5)]

    def wall(at: datetime) -> datetime:
        return at.astimezone(zone).replace(tzinfo=None)

    for bound in minutes:
        start = us_to_naive_bound(us(bound), zone)
        end = us_to_naive_bound(us(bound), zone, is_end=True)
        assert all(wall(at) >= start for at in minutes if at >= bound), bound
        assert all(wall(at) <= end for at in minutes if at <= bound), bound


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_rows_a_widened_start_returns_are_stamped_within_the_slack(zone):
    """What the bound admits, read back with the first of an ambiguous pair, stays above start - slack."""
    transition = TRANSITIONS[str(zone)]
    for m in range(-150, 151, 5):
        start = us(transition + timedelta(minutes=m, microseconds=654_321))
        bound = us_to_naive_bound(start, zone)
        lowest = to_epoch_us(bound, zone, None)
        assert lowest >= start - bound_slack_us(start, zone, None)


def test_slack_is_one_second_one_unit_or_a_dst_shift():
    plain = us(datetime(2026, 7, 1, tzinfo=UTC))
    assert bound_slack_us(plain, PARIS, None) == 1_000_000
    assert bound_slack_us(plain, UTC, "ms") == 1_000
    assert bound_slack_us(us(TRANSITIONS["Europe/Paris"]), PARIS, None) == 1_000_000 + 3_600_000_000
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert (
        bound_slack_us(us(TRANSITIONS["Australia/Lord_Howe"]), lord_howe, None) == 1_000_000 + 1_800_000_000
    )
