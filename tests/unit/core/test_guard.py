"""The guard's arithmetic: where it caps the watermark, when it lets go, what it calls late."""

from __future__ import annotations

from airflow_dbstream.core.guard import (
    BLIND,
    OFF,
    ON,
    OVER_MAX_HOLD,
    SINGLE_WRITER,
    OpenTransactions,
    decide,
    observed_lateness_us,
)
from airflow_dbstream.core.window import next_watermark

S = 1_000_000
NOW = 1_000 * S
HOUR = 3_600 * S


def test_an_old_open_transaction_caps_the_watermark_at_its_start_plus_lookback():
    hold = decide(OpenTransactions(ON, oldest_start_us=NOW - 30 * S), NOW - 40 * S, 2 * S, NOW, HOUR)
    assert (hold.state, hold.cap_us, hold.oldest_age_us) == (ON, NOW - 28 * S, 30 * S)
    # the next window then starts at the transaction's start: its rows are read when it commits
    assert next_watermark(NOW - 40 * S, NOW - S, NOW, hold.cap_us) - 2 * S == NOW - 30 * S


def test_a_young_or_no_transaction_changes_nothing():
    young = decide(OpenTransactions(ON, oldest_start_us=NOW - S // 100), None, 2 * S, NOW, HOUR)
    assert next_watermark(None, NOW - S, NOW, young.cap_us) == NOW - S
    assert decide(OpenTransactions(ON), NOW - S, 2 * S, NOW, HOUR).cap_us is None


def test_a_transaction_of_unknown_start_keeps_the_watermark_where_it_is():
    hold = decide(OpenTransactions(ON, start_unknown=True), NOW - 10 * S, 2 * S, NOW, HOUR)
    assert hold.cap_us == NOW - 10 * S
    assert next_watermark(NOW - 10 * S, NOW - S, NOW, hold.cap_us) == NOW - 10 * S
    first = decide(OpenTransactions(ON, start_unknown=True), None, 2 * S, NOW, HOUR)
    assert first.cap_us == NOW - HOUR + 2 * S  # a first cycle knows no earlier bound than max hold


def test_past_max_hold_the_guard_lets_go():
    hold = decide(OpenTransactions(ON, oldest_start_us=NOW - 2 * HOUR), NOW - S, 2 * S, NOW, HOUR)
    assert (hold.state, hold.cap_us, hold.oldest_age_us) == (OVER_MAX_HOLD, None, 2 * HOUR)


def test_off_blind_and_single_writer_never_cap():
    for visibility in (OFF, BLIND, SINGLE_WRITER):
        hold = decide(OpenTransactions(visibility, oldest_start_us=NOW - HOUR), NOW, 2 * S, NOW, 2 * HOUR)
        assert (hold.state, hold.cap_us) == (visibility, None)


def test_observed_lateness_is_the_gap_below_the_previous_watermark():
    assert observed_lateness_us(NOW, NOW - 3 * S) == 3 * S
    assert observed_lateness_us(NOW, NOW + S) == 0
    assert observed_lateness_us(None, NOW) is None and observed_lateness_us(NOW, None) is None
