"""Bad input: a clear error naming stream, column and row; nothing more emitted; watermark unmoved."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import make_operator, read_stream, run_cycle, set_connection, watermark

pytestmark = pytest.mark.integration


@pytest.fixture
def primed(source, stream, redis_client):
    """A stream with one committed cycle, so each test can check that nothing moved."""
    source.insert([(i, f"c{i}", source.now() - timedelta(minutes=1)) for i in range(1, 11)])
    run_cycle(source, stream)
    return len(read_stream(redis_client, stream)), watermark(redis_client, stream)


def _assert_unchanged(redis_client, stream, primed):
    length, committed = primed
    assert len(read_stream(redis_client, stream)) == length
    assert watermark(redis_client, stream) == committed


def test_missing_pkey_column_lists_the_columns_returned(source, stream, redis_client, primed):
    with pytest.raises(DbStreamInputError) as err:
        run_cycle(source, stream, pkey_column="customer_id")
    message = str(err.value)
    assert stream in message and "'customer_id'" in message
    assert "['id', 'name', 'updated_at']" in message
    _assert_unchanged(redis_client, stream, primed)


def test_missing_epoch_column(source, stream, redis_client, primed):
    with pytest.raises(DbStreamInputError, match=r"no column 'modified_at'.*returned \['id', 'name'"):
        run_cycle(source, stream, epoch_column="modified_at")
    _assert_unchanged(redis_client, stream, primed)


def test_null_pkey_names_column_and_row(source, stream, redis_client, primed):
    sql = source.sql.replace("SELECT id,", "SELECT CASE WHEN id = 5 THEN NULL ELSE id END AS id,")
    source.set(5, "changed", source.now())
    with pytest.raises(DbStreamInputError, match=r"column 'id' of row \d+ is NULL"):
        run_cycle(source, stream, sql=sql + " ORDER BY id", batch_size=100)
    _assert_unchanged(redis_client, stream, primed)


def test_null_epoch_names_column_and_row(source, stream, redis_client, primed):
    sql = source.sql.replace(
        "updated_at FROM", "CASE WHEN id = 4 THEN NULL ELSE updated_at END AS updated_at FROM"
    )
    source.set(4, "changed", source.now())
    with pytest.raises(DbStreamInputError, match=r"column 'updated_at' of row \d+ \(pkey '4'\) is NULL"):
        run_cycle(source, stream, sql=sql)
    _assert_unchanged(redis_client, stream, primed)


def test_null_in_a_later_batch_emits_nothing_of_that_batch(source, stream, redis_client, primed):
    source.insert([(i, f"c{i}", source.now()) for i in range(100, 130)])
    sql = source.sql.replace("SELECT id,", "SELECT CASE WHEN id = 125 THEN NULL ELSE id END AS id,")
    with pytest.raises(DbStreamInputError, match="row 36 is NULL"):
        run_cycle(source, stream, sql=sql + " ORDER BY updated_at", batch_size=20)
    length, committed = primed
    # batch 1 (ids 1-10 re-read, 100-109 new) was emitted; the failing batch 2 emitted nothing
    assert len(read_stream(redis_client, stream)) == length + 10
    assert watermark(redis_client, stream) == committed
    figures = run_cycle(source, stream, batch_size=20)
    assert figures["emitted"] == 20  # the rerun with fixed SQL completes the window


def test_sql_that_does_not_bind_window_start(source, stream, redis_client, primed):
    sql = source.sql.split(" WHERE ")[0]
    with pytest.raises(DbStreamInputError, match="does not bind window_start"):
        run_cycle(source, stream, sql=sql)
    _assert_unchanged(redis_client, stream, primed)


def test_sql_that_binds_window_start_only_in_a_comment(source, stream, redis_client, primed):
    sql = source.sql.split(" WHERE ")[0] + f" -- WHERE updated_at >= {source.param('window_start')}"
    with pytest.raises(DbStreamInputError, match="does not bind window_start"):
        run_cycle(source, stream, sql=sql)
    _assert_unchanged(redis_client, stream, primed)


def test_unknown_connection_id(source, stream, redis_client, primed):
    with pytest.raises(
        DbStreamInputError, match=r"sql_conn_id 'no_such_db' is not defined.*AIRFLOW_CONN_NO_SUCH_DB"
    ):
        run_cycle(source, stream, sql_conn_id="no_such_db")
    _assert_unchanged(redis_client, stream, primed)


def test_connection_that_is_not_sql(source, stream, redis_client, primed, monkeypatch):
    set_connection(monkeypatch, "not_sql", {"conn_type": "redis", "host": "127.0.0.1"})
    with pytest.raises(
        DbStreamInputError, match=r"'not_sql' is a 'redis' connection .*not a SQL \(DbApiHook\)"
    ):
        run_cycle(source, stream, sql_conn_id="not_sql")
    _assert_unchanged(redis_client, stream, primed)


def test_connection_whose_provider_is_not_installed(source, stream, redis_client, primed, monkeypatch):
    set_connection(monkeypatch, "crm_api", {"conn_type": "http", "host": "example.com"})
    with pytest.raises(DbStreamInputError) as err:
        run_cycle(source, stream, sql_conn_id="crm_api")
    message = str(err.value)
    assert "sql_conn_id 'crm_api' is a 'http' connection" in message
    assert "pip install apache-airflow-providers-http" in message
    _assert_unchanged(redis_client, stream, primed)


def test_unencodable_value_names_the_column(pg_table, stream, redis_client):
    pg_table.insert([(1, "x", pg_table.now())])
    sql = pg_table.sql.replace("SELECT id,", "SELECT id, int4range(1, 5) AS location,")
    with pytest.raises(
        DbStreamInputError, match=r"column 'location' of row 1 \(pkey '1'\).*cast it in the SQL"
    ):
        run_cycle(pg_table, stream, sql=sql)
    assert read_stream(redis_client, stream) == []
    assert watermark(redis_client, stream) is None


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"lookback": timedelta(0)}, "lookback must be a positive timedelta"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"maxlen": 0}, "maxlen must be None or a positive length"),
        ({"parameters": {"window_start": 1}}, "parameters must not set"),
        ({"epoch_unit": "minutes"}, "Unknown epoch_unit"),
    ],
)
def test_bad_operator_arguments_fail_at_parse_time(pg_table, stream, overrides, problem):
    from tests.integration.conftest import make_operator

    with pytest.raises(DbStreamInputError, match=problem):
        make_operator(pg_table, stream, **overrides)


def test_bad_stream_name_and_timezone(pg_table, stream):
    with pytest.raises(DbStreamInputError, match="Invalid stream name"):
        run_cycle(pg_table, "bad stream\r\nFLUSHALL")
    with pytest.raises(DbStreamInputError, match="Unknown source_timezone 'Mars/Olympus'"):
        run_cycle(pg_table, stream, source_timezone="Mars/Olympus")


@pytest.mark.parametrize("first_load", ["window", "start_from", "unchunked", "chunked"])
def test_an_empty_read_still_checks_the_key_and_epoch_columns(source, stream, redis_client, first_load):
    """No row returned: a misspelt pkey or epoch column is found all the same, on every path."""
    at = source.now() - timedelta(hours=2)
    source.insert([(1, "c1", at)])
    if first_load == "window":
        run_cycle(source, stream)  # a watermark: the next cycle reads a window
    kwargs = {
        "window": {"sql": source.sql + " AND 1 = 0"},
        "start_from": {"start_from": source.now()},
        "unchunked": {"snapshot_chunk_size": None, "sql": source.sql + " AND 1 = 0"},
        "chunked": {"sql": source.sql + " AND 1 = 0"},
    }[first_load]
    for bad in ({"pkey_column": "customer_id"}, {"epoch_column": "modified_at"}):
        with pytest.raises(
            DbStreamInputError, match=r"no column '\w+'; it returned \['id', 'name', 'updated_at'\]"
        ):
            run_cycle(source, stream, **kwargs, **bad)
    assert run_cycle(source, stream, **kwargs)["rows_read"] == 0


def test_an_empty_replay_checks_its_columns(source, stream):
    source.insert([(1, "c1", source.now() - timedelta(hours=2))])
    replay = {"action": "replay", "replay_from": source.now().isoformat()}
    with pytest.raises(DbStreamInputError, match=r"no column 'customer_id'; it returned \['id', 'name'"):
        make_operator(source, stream, pkey_column="customer_id").execute(
            context={"params": replay, "run_id": "replay-empty"}
        )
