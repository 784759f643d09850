from airflow_dbstream.core.epoch import SNAPSHOT_START_US
from airflow_dbstream.core.window import lag_seconds, next_watermark, plan_window, trim_cutoff


def test_window_starts_lookback_before_the_watermark():
    window = plan_window(watermark_us=10_000, lookback_us=3_000, start_from_us=None, db_now_us=12_000)
    assert (window.start_us, window.end_us, window.snapshot) == (7_000, 12_000, False)


def test_first_cycle_is_a_snapshot_or_starts_at_start_from():
    assert plan_window(None, 3_000, None, 12_000).start_us == SNAPSHOT_START_US
    assert plan_window(None, 3_000, None, 12_000).snapshot
    window = plan_window(None, 3_000, 5_000, 12_000)
    assert (window.start_us, window.snapshot) == (5_000, False)


def test_watermark_moves_forward_only_and_is_capped_by_the_database_clock():
    assert next_watermark(None, None, 100) is None
    assert next_watermark(None, 50, 100) == 50
    assert next_watermark(60, 50, 100) == 60  # never back
    assert next_watermark(60, 10_000, 100) == 100  # a row stamped in the future
    assert next_watermark(60, None, 100) == 60


def test_trim_cutoff_is_the_next_window_start():
    assert trim_cutoff(10_000, 3_000) == plan_window(10_000, 3_000, None, 0).start_us


def test_lag():
    assert lag_seconds(None, 5) is None
    assert lag_seconds(1_000_000, 3_500_000) == 2.5
