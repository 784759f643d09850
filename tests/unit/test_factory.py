"""The YAML factory: durations, defaults, and mistakes named by file, source and key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.factory import dags_from_yaml, load_sources, parse_duration
from tests.conftest import PROJECT_ROOT

SOURCE = """
  - name: t
    sql_conn_id: db
    sql: SELECT 1 WHERE x >= %(window_start)s
    stream: t
    pkey_column: id
    epoch_column: updated_at
    lookback: 15m
    variant: t.v1
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500ms", timedelta(milliseconds=500)), ("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)),
     ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)), (90, timedelta(seconds=90))],
)  # fmt: skip
def test_durations(text, expected):
    assert parse_duration(text, "x") == expected


def test_the_example_file_yields_two_dags():
    sources, settings = load_sources(PROJECT_ROOT / "dags/streams.yaml")
    assert [s["name"] for s in sources] == ["orders", "invoices"]
    assert settings["dag_id_prefix"] == "stream_"
    assert sources[0]["sql_conn_id"] == "crm_db" and sources[0]["lookback"] == timedelta(minutes=15)
    assert sources[0]["schedule"] == timedelta(minutes=1) and sources[1]["schedule"] == "*/5 * * * *"
    dags = dags_from_yaml(PROJECT_ROOT / "dags/streams.yaml")
    assert sorted(dags) == ["stream_invoices", "stream_orders"]
    assert dags["stream_orders"].tasks[0].stream == "orders"


def test_continuous_source(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("sources:" + SOURCE + "    schedule: '@continuous'\n    run_for: 5m\n")
    (dag,) = dags_from_yaml(path).values()
    assert dag.max_active_runs == 1 and dag.tasks[0].run_for == timedelta(minutes=5)
    assert dag.tasks[0].poll_interval == timedelta(seconds=1)


def test_on_bad_row_reaches_the_operator(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("sources:" + SOURCE + "    on_bad_row: dead_letter\n")
    (dag,) = dags_from_yaml(path).values()
    assert dag.tasks[0].spec.on_bad_row == "dead_letter"
    path.write_text("sources:" + SOURCE + "    on_bad_row: skip\n")
    with pytest.raises(DbStreamInputError, match="on_bad_row must be"):
        dags_from_yaml(path)


def test_lock_lease_and_wait_are_durations(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("sources:" + SOURCE + "    lock_lease: 8s\n    lock_wait: 2m\n")
    (dag,) = dags_from_yaml(path).values()
    assert dag.tasks[0].spec.lock_lease == timedelta(seconds=8)
    assert dag.tasks[0].spec.lock_wait == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: 3", "expected a mapping with a `sources:` list"),
        ("sources:" + SOURCE + "    colour: red\n", "source 't': unknown keys \\['colour'\\]"),
        ("sources:" + SOURCE.replace("    stream: t\n", ""), "source 't': missing \\['stream'\\]"),
        ("sources:" + SOURCE.replace("15m", "soon"), "source 't', lookback: 'soon' is not a duration"),
        ("sources:" + SOURCE + SOURCE, "name must be unique"),
        ("sources:" + SOURCE + "    schedule: '@continuous'\n", "@continuous needs run_for"),
        ("sources: [\n", "cannot read the sources file"),
    ],
)
def test_mistakes_name_the_source_and_key(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(DbStreamInputError, match=message):
        load_sources(path)
