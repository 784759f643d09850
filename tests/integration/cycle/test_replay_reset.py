"""Replay and reset through the run's Params, on real Postgres and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from tests.integration.conftest import make_operator, read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration


def _run(table, stream, run_id: str, lookback=timedelta(hours=1), **params):
    operator = make_operator(table, stream, lookback=lookback)
    return operator.execute(context={"params": params, "run_id": run_id})


def test_replay_resends_the_range_marked_and_leaves_dedup_state_alone(pg_table, stream, redis_client):
    now = pg_table.now()
    base = now - timedelta(minutes=30)
    pg_table.insert([(i, f"customer {i}", base + timedelta(minutes=i)) for i in range(1, 21)])
    run_cycle(pg_table, stream)
    mark = watermark(redis_client, stream)
    seen = redis_client.zrange("{" + stream + "}:seen", 0, -1, withscores=True)

    replay_from = (base + timedelta(minutes=5)).isoformat()
    replay_to = (base + timedelta(minutes=10)).isoformat()
    figures = _run(pg_table, stream, "manual__replay1", action="replay", replay_from=replay_from,
                   replay_to=replay_to)  # fmt: skip
    assert figures["replayed"] == 5 and figures["rows_read"] >= 5
    messages = read_stream(redis_client, stream)
    assert len(messages) == 25
    replayed = messages[20:]
    assert [int(m["pkey"]) for m in replayed] == [5, 6, 7, 8, 9]
    assert {m["replay"] for m in replayed} == {"manual__replay1"}
    assert all("replay" not in m for m in messages[:20])
    assert replayed[0]["payload"] == messages[4]["payload"] and replayed[0]["epoch"] == messages[4]["epoch"]
    # Dedup state and watermark are untouched: the next cycle sends nothing.
    assert watermark(redis_client, stream) == mark
    assert redis_client.zrange("{" + stream + "}:seen", 0, -1, withscores=True) == seen
    assert run_cycle(pg_table, stream)["emitted"] == 0
    assert "last_replay" in {k.decode() for k in redis_client.hkeys("{" + stream + "}:state")}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ("updated_at FROM", "CASE WHEN id = 3 THEN NULL ELSE updated_at END AS updated_at FROM"),
            r"column 'updated_at' of row \d+ \(pkey '3'\) is NULL",
        ),
        (("SELECT id,", "SELECT id AS customer_id,"), r"no column 'id'; it returned \['customer_id', 'name'"),
    ],
)
def test_replay_checks_its_rows_as_a_window_does(source, stream, redis_client, change, error):
    now = source.now()
    source.insert([(i, f"customer {i}", now - timedelta(minutes=i)) for i in range(1, 6)])
    run_cycle(source, stream)
    operator = make_operator(source, stream, sql=source.sql.replace(*change))
    params = {"action": "replay", "replay_from": (now - timedelta(hours=1)).isoformat()}
    with pytest.raises(DbStreamInputError, match=error):
        operator.execute(context={"params": params, "run_id": "manual__bad"})
    assert not [m for m in read_stream(redis_client, stream) if "replay" in m]


def test_replay_to_now_by_default(pg_table, stream, redis_client):
    now = pg_table.now()
    pg_table.insert([(i, "x", now - timedelta(minutes=i)) for i in range(1, 4)])
    figures = _run(pg_table, stream, "r", action="replay", replay_from=(now - timedelta(hours=1)).isoformat())
    assert figures["replayed"] == 3
    assert watermark(redis_client, stream) is None  # a replay is not a cycle


def test_reset_needs_confirmation_then_forgets_state_and_reemits_from_start_from(
    pg_table, stream, redis_client
):
    now = pg_table.now()
    pg_table.insert([(i, "x", now - timedelta(minutes=60 - i)) for i in range(1, 11)])
    run_cycle(pg_table, stream)
    assert len(read_stream(redis_client, stream)) == 10
    before = watermark(redis_client, stream)

    with pytest.raises(DbStreamInputError, match="confirm_reset"):
        _run(pg_table, stream, "r0", action="reset", confirm_reset="not-the-stream")
    assert before is not None and watermark(redis_client, stream) == before

    start_from = (now - timedelta(minutes=60 - 8)).isoformat()  # rows 8, 9, 10
    figures = _run(pg_table, stream, "r1", action="reset", confirm_reset=stream, start_from=start_from)
    assert figures["emitted"] == 3
    assert len(read_stream(redis_client, stream)) == 13  # the stream's messages are kept
    assert redis_client.zcard("{" + stream + "}:seen") == 3
    assert b"last_reset" in redis_client.hkeys("{" + stream + "}:state")


def test_start_from_param_applies_to_a_first_cycle_only(pg_table, stream, redis_client):
    now = pg_table.now()
    pg_table.insert([(i, "x", now - timedelta(minutes=60 - i)) for i in range(1, 11)])
    start_from = (now - timedelta(minutes=55)).isoformat()  # rows 5..10
    minute = timedelta(minutes=1)
    assert _run(pg_table, stream, "r", minute, action="cycle", start_from=start_from)["emitted"] == 6
    pg_table.set(1, "changed", pg_table.now())
    early = (now - timedelta(hours=5)).isoformat()
    second = _run(pg_table, stream, "r", minute, action="cycle", start_from=early)
    assert (second["emitted"], second["rows_read"]) == (1, 3)  # the watermark wins: rows 9, 10, 1


def test_replay_of_a_soft_deleted_row_is_a_marked_tombstone(pg_table, stream, redis_client):
    pg_table.execute("ALTER TABLE {table} ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    now = pg_table.now()
    pg_table.insert([(1, "kept", now - timedelta(minutes=2)), (2, "gone", now - timedelta(minutes=1))])
    pg_table.execute("UPDATE {table} SET deleted = true WHERE id = 2")
    sql = f"SELECT id, name, updated_at, deleted FROM {pg_table.name} WHERE updated_at >= %(window_start)s"
    operator = make_operator(pg_table, stream, sql=sql, deleted_column="deleted")
    params = {"action": "replay", "replay_from": (now - timedelta(hours=1)).isoformat()}
    assert operator.execute(context={"params": params, "run_id": "r"})["replayed"] == 2
    ops = {m["pkey"]: (m.get("op"), m["replay"]) for m in read_stream(redis_client, stream)}
    assert ops == {"1": (None, "r"), "2": ("delete", "r")}


def test_reset_waits_for_the_lock_of_a_running_cycle(pg_table, stream, redis_client, monkeypatch):
    import airflow_dbstream.cycle.replay as module

    pg_table.insert([(1, "x", pg_table.now())])
    run_cycle(pg_table, stream)
    before = watermark(redis_client, stream)
    redis_client.set("{" + stream + "}:lock", "another-worker:1", px=60_000)  # a cycle elsewhere
    monkeypatch.setattr(module, "OPERATION_LOCK_WAIT", timedelta(seconds=0.3))
    with pytest.raises(DbStreamInputError, match="was not reset: another cycle"):
        _run(pg_table, stream, "r", action="reset", confirm_reset=stream)
    assert before is not None and watermark(redis_client, stream) == before  # untouched
    redis_client.delete("{" + stream + "}:lock")
    assert _run(pg_table, stream, "r", action="reset", confirm_reset=stream)["emitted"] == 1
