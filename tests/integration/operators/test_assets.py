"""The stream as an Asset: the operators' alias outlet and the one event a run that appended adds to it,
with Airflow's own outlet-event accessors, real Postgres/SQLite and Redis (the scheduler's side:
tests/system/test_assets.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from tests.integration.conftest import REDIS_HOST, REDIS_PORT, make_operator
from tests.integration.operators.test_reconcile import reconcile

pytestmark = pytest.mark.integration


def events_of(operator, **context) -> list:
    """Run the task as Airflow would hand it its outlet events; the events it added."""
    outlet_events = OutletEventAccessors()
    operator.execute(context={"outlet_events": outlet_events, **context})
    [alias] = [o for o in operator.outlets if isinstance(o, AssetAlias)]
    return outlet_events[alias].asset_alias_events


def test_the_outlet_is_an_alias_named_from_arguments_only(pg_table, stream, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_REDIS_TEST")  # no connection is read at parse time
    extra_outlet = AssetAlias(name="mine")
    operator = make_operator(pg_table, stream, outlets=[extra_outlet])
    assert operator.outlets == [extra_outlet, AssetAlias(name=f"dbstream:redis_test:{stream}")]


def test_a_cycle_that_emitted_adds_one_event_with_its_figures_and_a_quiet_one_none(
    source, stream, redis_client
):
    old = source.now() - timedelta(hours=2)
    source.insert([(i, f"c{i}", old + timedelta(seconds=i)) for i in range(1, 6)])
    [event] = events_of(make_operator(source, stream))
    uri = f"redis://{REDIS_HOST}:{REDIS_PORT}/0/{stream}"
    assert (event.source_alias_name, event.dest_asset_key.uri, event.dest_asset_key.name) == (
        f"dbstream:redis_test:{stream}",
        uri,
        uri,
    )
    last_id = redis_client.xinfo_stream(stream)["last-generated-id"].decode()
    state_watermark = redis_client.hget("{" + stream + "}:state", "watermark")
    assert event.extra == {
        "stream": stream,
        "action": "cycle",
        "cycles": 1,
        "rows_read": 5,
        "emitted": 5,
        "duplicates": 0,
        "deletes": 0,
        "watermark": event.extra["watermark"],
        "last_entry_id": last_id,
    }
    assert event.extra["watermark"].startswith(str(old.date())) and state_watermark is not None

    assert events_of(make_operator(source, stream)) == []  # quiet: read again, nothing appended
    source.set(3, "changed", source.now())
    [changed] = events_of(make_operator(source, stream))
    assert (changed.extra["emitted"], changed.extra["duplicates"]) == (1, 4)
    assert changed.extra["last_entry_id"] > last_id


def test_a_run_of_several_cycles_adds_one_event_with_their_sums(pg_table, stream):
    now = pg_table.now()
    pg_table.insert([(i, f"c{i}", now - timedelta(seconds=i)) for i in range(1, 4)])
    operator = make_operator(pg_table, stream, run_for=timedelta(seconds=1.2), poll_interval=0.3)
    [event] = events_of(operator)
    assert event.extra["cycles"] >= 2 and event.extra["emitted"] == 3
    assert event.extra["rows_read"] >= 3 * event.extra["cycles"]  # the window is read each cycle


def test_a_reconcile_adds_an_event_for_the_same_stream_only_when_it_sent_tombstones(
    pg_table, stream, redis_client
):
    old = pg_table.now() - timedelta(hours=2)
    pg_table.insert([(i, f"c{i}", old + timedelta(seconds=i)) for i in range(1, 5)])
    [first] = events_of(make_operator(pg_table, stream, track_keys=True))
    assert first.extra["emitted"] == 4
    pg_table.execute("DELETE FROM {table} WHERE id = 2")
    from airflow_dbstream.operators.reconcile_deletes import ReconcileDeletesOperator

    def sweep():
        operator = ReconcileDeletesOperator(
            task_id="reconcile",
            sql_conn_id=pg_table.conn_id,
            redis_conn_id="redis_test",
            sql=f"SELECT id FROM {pg_table.name}",
            stream=stream,
            pkey_column="id",
            lookback=timedelta(hours=1),
            variant="customer.v1",
        )
        assert operator.outlets == [AssetAlias(name=f"dbstream:redis_test:{stream}")]  # the same stream
        return events_of(operator)

    [tombstones] = sweep()
    assert (tombstones.extra["action"], tombstones.extra["deletes"], tombstones.extra["emitted"]) == (
        "reconcile",
        1,
        1,
    )
    assert (
        tombstones.extra["last_entry_id"] == redis_client.xinfo_stream(stream)["last-generated-id"].decode()
    )
    assert sweep() == []  # nothing vanished since
    assert reconcile(pg_table, stream)["deleted"] == 0


def test_a_replay_adds_an_event_for_what_it_appended_again(pg_table, stream):
    old = pg_table.now() - timedelta(hours=2)
    pg_table.insert([(i, f"c{i}", old + timedelta(seconds=i)) for i in range(1, 4)])
    events_of(make_operator(pg_table, stream))
    params = {"action": "replay", "replay_from": (old - timedelta(minutes=1)).isoformat()}
    [event] = events_of(make_operator(pg_table, stream), params=params, run_id="manual__replay")
    assert (event.extra["action"], event.extra["emitted"], event.extra["replay"]) == (
        "replay",
        3,
        "manual__replay",
    )


def test_a_failed_cycle_adds_no_event(pg_table, stream):
    pg_table.insert([(1, "a", pg_table.now())])
    outlet_events = OutletEventAccessors()
    operator = make_operator(pg_table, stream, pkey_column="no_such_column")
    with pytest.raises(Exception, match="no_such_column"):
        operator.execute(context={"outlet_events": outlet_events})
    assert outlet_events[AssetAlias(name=f"dbstream:redis_test:{stream}")].asset_alias_events == []


def test_a_user_without_xinfo_stream_still_gets_the_event_without_the_entry_id(
    own_redis, pg_table, stream, monkeypatch, capfd
):
    from airflow_dbstream.core.acl import acl_rules
    from tests.integration.conftest import set_connection

    server = own_redis()
    password = uuid.uuid4().hex
    server.admin().execute_command("ACL", "SETUSER", "dbstream", "on", f">{password}",
                                   *acl_rules("test:*"), "-xinfo|stream")  # fmt: skip
    set_connection(
        monkeypatch, "redis_acl", server.connection() | {"login": "dbstream", "password": password}
    )
    pg_table.insert([(1, "a", pg_table.now())])
    [event] = events_of(make_operator(pg_table, stream, redis_conn_id="redis_acl"))
    assert event.extra["emitted"] == 1 and event.extra["last_entry_id"] is None
    assert event.dest_asset_key.uri == f"redis://127.0.0.1:{server.port}/0/{stream}"
    logged = capfd.readouterr()
    assert "without last_entry_id" in logged.out + logged.err and "'xinfo|stream'" in logged.out + logged.err
