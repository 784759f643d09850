"""The chunked, resumable first load on real Postgres, SQLite and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.cycle.pipeline import Pipeline
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration

ROWS = 200_000
CHILD = """
import sys, json
from datetime import timedelta
from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
kwargs = json.loads(sys.argv[1])
kwargs["lookback"] = timedelta(hours=1)
kwargs["lock_lease"] = timedelta(seconds=2)  # the lock a SIGKILLed cycle leaves behind frees itself soon
SqlToRedisStreamOperator(task_id="snapshot", **kwargs).execute(context={})
"""


def _fill(source, n: int, base) -> None:
    """n rows, one millisecond apart, id i stamped base + i ms: id order is epoch order."""
    rows = [(i, f"customer {i}", base + timedelta(milliseconds=i)) for i in range(1, n + 1)]
    if source.kind == "sqlite":
        source.db.execute("BEGIN")
        source.insert(rows)
        source.db.execute("COMMIT")
    elif source.kind == "mariadb":
        source.insert(rows)
    else:
        with (
            source.db.cursor() as cur,
            cur.copy(f"COPY {source.name} (id, name, updated_at) FROM STDIN") as cp,
        ):
            for row in rows:
                cp.write_row(row)


def _state(redis_client, stream) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis_client.hgetall("{" + stream + "}:state").items()}


def _until_bounded(source) -> str:
    """The author's SQL binding window_end too: rows changed after the snapshot began are left out."""
    end = source.param("window_end")
    return source.sql + f" AND updated_at < {end}"


def test_snapshot_killed_halfway_resumes_and_every_row_arrives_once(source, stream, redis_client):
    base = source.now() - timedelta(days=1)
    _fill(source, ROWS, base)
    sql = _until_bounded(source)
    spec = dict(
        sql_conn_id=source.conn_id, redis_conn_id="redis_test", sql=sql, stream=stream, pkey_column="id",
        epoch_column="updated_at", variant="customer.v1", batch_size=2000, snapshot_chunk_size=10_000,
    )  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)], cwd=PROJECT_ROOT, env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 120
        while int(_state(redis_client, stream).get("snapshot_rows") or 0) < ROWS // 2:
            assert child.poll() is None, "the snapshot ended before it could be killed"
            assert time.monotonic() < deadline, "the snapshot made no progress"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    state = _state(redis_client, stream)
    assert "watermark" not in state  # the table is not covered yet: no watermark
    done = int(state["snapshot_rows"])
    assert ROWS // 2 <= done < ROWS
    assert done <= redis_client.xlen(stream) < ROWS

    # Changes while the snapshot is between its two runs: one row behind the cursor, one ahead, one new.
    changed_at = source.now()
    source.set(3, "changed behind the cursor", changed_at)
    source.set(ROWS - 3, "changed ahead of the cursor", changed_at)
    source.insert([(ROWS + 1, "inserted during the snapshot", changed_at)])

    resumed = run_cycle(
        source, stream, sql=sql, batch_size=2000, snapshot_chunk_size=10_000, lock_wait=timedelta(seconds=20)
    )  # waits for the killed cycle's lock to expire
    assert resumed["rows_read"] < ROWS - done + 10_000  # it did not start over
    assert watermark(redis_client, stream) is not None
    assert not any(k.startswith("snapshot_") for k in _state(redis_client, stream))
    after = run_cycle(source, stream, sql=sql, batch_size=2000)  # the first normal cycle
    assert after["emitted"] == 3

    messages = read_stream(redis_client, stream)
    versions = Counter((m["pkey"], m["epoch"]) for m in messages)
    assert set(versions.values()) == {1}, "a version was emitted twice"
    assert {int(m["pkey"]) for m in messages} == set(range(1, ROWS + 2))
    assert len(messages) == ROWS + 2  # every row once, plus the new version of the row behind the cursor
    last = {m["pkey"]: json.loads(m["payload"])["name"] for m in messages}
    assert last["3"] == "changed behind the cursor"
    assert last[str(ROWS - 3)] == "changed ahead of the cursor"
    assert last[str(ROWS + 1)] == "inserted during the snapshot"
    assert run_cycle(source, stream, sql=sql)["emitted"] == 0


def test_snapshot_reads_rows_changed_ahead_of_its_cursor_once(source, stream, redis_client, monkeypatch):
    """The author's SQL without window_end: the snapshot itself meets the new version, once."""
    _fill(source, 1000, source.now() - timedelta(days=1))
    real_emit, real_prepare = RedisStreamHook.emit, Pipeline.prepare
    prepared, emits = [], []

    def change(self, *args, **kwargs):  # on the cycle's thread, where its source connection lives
        prepared.append(1)
        if len(prepared) == 2:
            source.set(900, "changed mid-snapshot", source.now())  # ahead of the cursor
            source.set(5, "changed behind", source.now())  # behind the cursor
        return real_prepare(self, *args, **kwargs)

    def die(self, *args, **kwargs):
        emits.append(1)
        if len(emits) == 4:
            raise ConnectionError("worker lost mid-snapshot")
        return real_emit(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "prepare", change)
    monkeypatch.setattr(RedisStreamHook, "emit", die)
    with pytest.raises(ConnectionError):
        run_cycle(source, stream, snapshot_chunk_size=200, batch_size=100)
    monkeypatch.setattr(Pipeline, "prepare", real_prepare)
    monkeypatch.setattr(RedisStreamHook, "emit", real_emit)
    assert watermark(redis_client, stream) is None
    run_cycle(source, stream, snapshot_chunk_size=200, batch_size=100)
    run_cycle(source, stream)
    messages = read_stream(redis_client, stream)
    assert len(messages) == 1001  # 1000 rows + the new version of row 5 (row 900 only in its new form)
    names = {m["pkey"]: json.loads(m["payload"])["name"] for m in messages}
    assert names["900"] == "changed mid-snapshot" and names["5"] == "changed behind"
    assert [m["pkey"] for m in messages].count("900") == 1


def test_a_column_the_sql_does_not_return_gets_the_columns_error_not_the_chunking_one(
    source, stream, redis_client
):
    """The first load checks the author's SQL as a window does before it wraps it: every database
    names the missing column and lists those returned, and points at no chunking setting."""
    _fill(source, 10, source.now() - timedelta(hours=2))
    sql = source.sql.replace("SELECT id, name, updated_at", "SELECT id, name, updated_at AS modified")
    with pytest.raises(
        DbStreamInputError, match=r"no column 'updated_at'; it returned \['id', 'name', 'modified'\]"
    ):
        run_cycle(source, stream, sql=sql)
    with pytest.raises(DbStreamInputError) as err:
        run_cycle(source, stream, pkey_column="customer_id")
    assert "no column 'customer_id'; it returned ['id', 'name', 'updated_at']" in str(err.value)
    assert "chunks" not in str(err.value) and "snapshot_chunk_size" not in str(err.value)
    assert redis_client.xlen(stream) == 0 and watermark(redis_client, stream) is None
    figures = run_cycle(source, stream, sql=sql, epoch_column="modified")
    assert figures["emitted"] == 10


def test_sql_that_fails_on_its_own_gets_the_databases_error_not_the_chunking_one(source, stream):
    sql = source.sql.replace(f"FROM {source.name}", "FROM dbstream_no_such_table")
    with pytest.raises(Exception) as err:
        run_cycle(source, stream, sql=sql)
    assert "no_such_table" in str(err.value) and "chunks" not in str(err.value)


def test_sql_the_chunks_cannot_order_gets_the_chunking_error(pg_table, stream, redis_client):
    """The author's SQL runs (its columns are there), its wrapping does not: explained as the wrapper's."""
    _fill(pg_table, 10, pg_table.now() - timedelta(hours=2))
    sql = pg_table.sql.replace("SELECT id,", "SELECT to_json(id) AS id,")  # json has no ordering
    with pytest.raises(
        DbStreamInputError, match=r"(?s)could not read the SQL in chunks.*snapshot_chunk_size=None"
    ):
        run_cycle(pg_table, stream, sql=sql)
    assert redis_client.xlen(stream) == 0 and watermark(redis_client, stream) is None


BAD_ROWS = {
    "null epoch": (
        ("updated_at FROM", "CASE WHEN id = 150 THEN NULL ELSE updated_at END AS updated_at FROM"),
        r"column 'updated_at' of row \d+ \(pkey '150'\) is NULL",
    ),
    "null key": (
        ("SELECT id,", "SELECT CASE WHEN id = 150 THEN NULL ELSE id END AS id,"),
        r"column 'id' of row \d+ is NULL; a primary key cannot be NULL",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_ROWS))
def test_a_null_epoch_or_key_in_a_middle_chunk_stops_the_first_load(source, stream, redis_client, bad):
    """Three chunks, the bad row in the second: a keyset page never returns a NULL epoch or key (on
    Postgres they sort last, past every cursor), so the first load reads such rows apart, first, and
    fails with the window's error instead of leaving the row out."""
    _fill(source, 250, source.now() - timedelta(hours=2))
    (old, new), error = BAD_ROWS[bad]
    sql = source.sql.replace(old, new)
    with pytest.raises(DbStreamInputError, match=error):
        run_cycle(source, stream, sql=sql, snapshot_chunk_size=100, batch_size=50)
    assert redis_client.xlen(stream) == 0  # found before any chunk was read
    assert watermark(redis_client, stream) is None
    # Resumed with the row fixed (here: the SQL), the first load reads every row once.
    figures = run_cycle(source, stream, snapshot_chunk_size=100, batch_size=50)
    assert figures["emitted"] == 250 and watermark(redis_client, stream) is not None
    assert len({m["pkey"] for m in read_stream(redis_client, stream)}) == 250


def test_an_unencodable_value_in_a_middle_chunk_stops_the_first_load_there(pg_table, stream, redis_client):
    _fill(pg_table, 250, pg_table.now() - timedelta(hours=2))
    sql = pg_table.sql.replace(
        "SELECT id,", "SELECT id, CASE WHEN id = 150 THEN int4range(1, 5) END AS location,"
    )
    with pytest.raises(DbStreamInputError, match=r"column 'location' of row 150 \(pkey '150'\).*cast it"):
        run_cycle(pg_table, stream, sql=sql, snapshot_chunk_size=100, batch_size=50)
    assert 100 <= redis_client.xlen(stream) < 150  # the first chunk went out, not the bad row's batch
    assert watermark(redis_client, stream) is None
    fixed = sql.replace("int4range(1, 5)", "int4range(1, 5)::text")
    run_cycle(pg_table, stream, sql=fixed, snapshot_chunk_size=100, batch_size=50)
    messages = read_stream(redis_client, stream)
    assert len(messages) == 250 and len({m["pkey"] for m in messages}) == 250
    assert watermark(redis_client, stream) is not None


TAILS = [
    ";",
    " -- a comment",
    ";\n-- a comment line after the semicolon",
    "; -- both on one line",
    " /* a block */ ;",
    ";\n/* a block\n   over lines */\n",
    "\n-- one\n; /* two */ -- three\n",
]


@pytest.mark.parametrize("tail", TAILS)
def test_sql_ending_in_semicolons_and_comments_is_read_in_chunks(source, stream, redis_client, tail):
    _fill(source, 250, source.now() - timedelta(hours=2))
    sql = source.sql + tail
    figures = run_cycle(source, stream, sql=sql, snapshot_chunk_size=100, batch_size=50)
    assert figures["emitted"] == 250 and watermark(redis_client, stream) is not None
    source.set(7, "changed", source.now())
    assert run_cycle(source, stream, sql=sql)["emitted"] == 1  # and the window runs it as written


def test_each_databases_own_comments_and_quotes_in_a_chunked_first_load(source, stream, redis_client):
    """MySQL's '#' comments, Postgres's dollar quotes, ';' and '--' inside literals: only what trails
    the last token is cut."""
    _fill(source, 250, source.now() - timedelta(hours=2))
    literal = "$x$ ; -- $x$" if source.kind == "postgres" else "' ; -- '"
    tail = ";\n# a MySQL comment\n" if source.kind == "mariadb" else ";\n-- a comment\n"
    sql = source.sql.replace("SELECT id,", f"SELECT {literal} AS note, id,") + tail
    figures = run_cycle(source, stream, sql=sql, snapshot_chunk_size=100, batch_size=50)
    assert figures["emitted"] == 250
    assert {json.loads(m["payload"])["note"] for m in read_stream(redis_client, stream)} == {" ; -- "}


def test_progress_is_logged_per_chunk(pg_table, stream, capfd):
    _fill(pg_table, 500, pg_table.now() - timedelta(hours=2))
    run_cycle(pg_table, stream, snapshot_chunk_size=100)
    text = "".join(capfd.readouterr())
    lines = [line for line in text.splitlines() if "rows_done=" in line]
    assert len(lines) == 5
    assert "rows_done=500 of ~500 (100.0%)" in lines[-1] and "rows/s" in lines[-1] and "eta=" in lines[-1]
