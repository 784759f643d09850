"""A failed cycle says what it did and what is safe; bad input fails without Airflow's retries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration


def _failure_lines(capfd) -> list[str]:
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if "the cycle failed" in line]


def test_bad_input_fails_the_task_without_retries_and_says_so_once(pg_table, stream, redis_client, capfd):
    pg_table.insert([(1, "a", pg_table.now() - timedelta(minutes=1))])
    unbound = pg_table.sql.replace("WHERE updated_at >= %(window_start)s", "")
    with pytest.raises(AirflowFailException) as failure:  # Airflow fails such a task at once, no retry
        run_cycle(pg_table, stream, sql=unbound, retries=3)
    assert isinstance(failure.value, DbStreamInputError) and "does not bind window_start" in str(
        failure.value
    )
    [line] = _failure_lines(capfd)
    assert "[error" in line and "before reading any row" in line and "The watermark did not move" in line
    assert "Cause (DbStreamInputError)" in line
    assert read_stream(redis_client, stream) == [] and watermark(redis_client, stream) is None


def test_a_bad_row_mid_window_is_reported_with_what_was_sent_and_no_payload(
    pg_table, stream, redis_client, capfd
):
    at = pg_table.now() - timedelta(minutes=5)
    pg_table.insert([(i, f"secret-{i}", at + timedelta(milliseconds=i)) for i in range(1, 301)])
    bad = (
        pg_table.sql.replace(
            "SELECT id, name, updated_at",
            "SELECT id, name, CASE WHEN id = 250 THEN NULL ELSE updated_at END AS updated_at",
        )
        + " ORDER BY id"
    )
    with pytest.raises(AirflowFailException, match="is NULL"):
        run_cycle(pg_table, stream, sql=bad, snapshot_chunk_size=None)
    [line] = _failure_lines(capfd)
    sent = redis_client.xlen(stream)
    assert f"appending {sent} messages" in line and "after reading" in line
    assert "clearing this task re-reads the same window [" in line and "secret-" not in line
    assert watermark(redis_client, stream) is None
