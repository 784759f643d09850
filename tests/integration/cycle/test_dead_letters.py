"""on_bad_row="dead_letter" on real Postgres, MariaDB, SQLite and Redis: each bad row version goes once
to ``<tag>:dead``, the cycle goes on, and a fixed row is emitted as usual; "fail" (the default) stops."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, timedelta

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.hooks.redis_stream import RedisStreamHook
from tests.integration.conftest import make_operator, read_dead, read_stream, run_cycle, watermark
from tests.integration.cycle.test_snapshot import _fill

pytestmark = pytest.mark.integration

DEAD = {"on_bad_row": "dead_letter"}


def _bad_sql(source, *, unreadable_epoch: bool = True) -> str:
    """The table's SQL, unchanged but for the rows whose name marks them bad: 'no key' reads a NULL id,
    'no epoch' a NULL updated_at, 'bad epoch' a text that is no time; on Postgres 'range' carries a
    value with no JSON form. Fixing a row is changing its name (and, as an application does, its
    updated_at); the good rows read the same every time."""
    stamp = "updated_at::text" if source.kind == "postgres" else "updated_at"
    bad_epoch = (
        f"WHEN name = 'bad epoch' THEN 'not a time' ELSE {stamp}" if unreadable_epoch else "ELSE updated_at"
    )
    location = (
        ", CASE WHEN name = 'range' THEN int4range(1, 5) END AS location" if source.kind == "postgres" else ""
    )
    return source.sql.replace(
        "SELECT id, name, updated_at FROM",
        "SELECT CASE WHEN name = 'no key' THEN NULL ELSE id END AS id, name, "
        f"CASE WHEN name = 'no epoch' THEN NULL {bad_epoch} END AS updated_at{location} FROM",
    )


def _letters(redis_client, stream) -> dict[str, dict[str, str]]:
    """The dead letters by the name of their row."""
    return {json.loads(d["values"])["name"]: d for d in read_dead(redis_client, stream)}


def test_a_window_sends_each_bad_row_once_to_the_dead_stream_and_goes_on(source, stream, redis_client, capfd):
    at = source.now() - timedelta(minutes=1)
    names = {4: "no epoch", 5: "no key", 6: "bad epoch", 7: "range"}
    if source.kind != "postgres":
        names.pop(7)
    source.insert([(i, names.get(i, f"c{i}"), at + timedelta(milliseconds=i)) for i in range(1, 11)])
    sql = _bad_sql(source)

    with pytest.raises(DbStreamInputError, match=r"column '(id|updated_at|location)' of row \d+"):
        run_cycle(source, stream, sql=sql)  # the default: a bad row stops the stream
    assert redis_client.xlen(stream) == 0 and read_dead(redis_client, stream) == []
    assert watermark(redis_client, stream) is None

    capfd.readouterr()
    figures = run_cycle(source, stream, sql=sql, **DEAD)
    bad = len(names)
    assert (figures["rows_read"], figures["emitted"], figures["dead_lettered"]) == (10, 10 - bad, bad)
    assert watermark(redis_client, stream) is not None
    assert f"dead_lettered={bad} " in "".join(capfd.readouterr())
    assert sorted(int(m["pkey"]) for m in read_stream(redis_client, stream)) == [
        i for i in range(1, 11) if i not in names
    ]
    letters = _letters(redis_client, stream)
    assert set(letters) == set(names.values())
    no_epoch, no_key, bad_epoch = letters["no epoch"], letters["no key"], letters["bad epoch"]
    assert no_epoch["error"] == "Column 'updated_at' is NULL; every row needs its epoch."
    assert (no_epoch["column"], no_epoch["pkey"], no_epoch["variant"]) == ("updated_at", "4", "customer.v1")
    assert "epoch" not in no_epoch
    assert json.loads(no_epoch["values"]) == {
        "id": "4", "name": "no epoch", "updated_at": None, **({"location": None} if len(names) == 4 else {})
    }  # fmt: skip
    assert no_key["error"] == "Column 'id' is NULL; a primary key cannot be NULL."
    assert no_key["column"] == "id" and "pkey" not in no_key
    assert int(no_key["epoch"]) == datetime_to_us(at + timedelta(milliseconds=5), UTC)
    assert bad_epoch["column"] == "updated_at" and bad_epoch["pkey"] == "6" and "epoch" not in bad_epoch
    assert "cannot be read as a modification time" in bad_epoch["error"]
    if source.kind == "postgres":
        assert letters["range"]["column"] == "location" and letters["range"]["pkey"] == "7"
        assert "Range value has no exact JSON form; cast it in the SQL" in letters["range"]["error"]
        assert json.loads(letters["range"]["values"])["location"] == "[1, 5)"

    again = run_cycle(source, stream, sql=sql, **DEAD)  # the same window, read again
    assert (again["emitted"], again["dead_lettered"]) == (0, 0)
    assert len(read_dead(redis_client, stream)) == bad

    for pkey in names:  # fixed, as applications fix rows: a new name, a new updated_at
        source.set(pkey, f"fixed {pkey}", source.now())
    fixed = run_cycle(source, stream, sql=sql, **DEAD)
    assert (fixed["emitted"], fixed["dead_lettered"]) == (bad, 0)
    messages = read_stream(redis_client, stream)
    assert sorted(int(m["pkey"]) for m in messages) == list(range(1, 11))
    assert Counter((m["pkey"], m["epoch"]) for m in messages).most_common(1)[0][1] == 1


def test_a_changed_bad_row_is_a_new_dead_letter(source, stream, redis_client):
    at = source.now() - timedelta(minutes=1)
    source.insert([(1, "c1", at), (2, "no key", at)])
    sql = _bad_sql(source)
    assert run_cycle(source, stream, sql=sql, **DEAD)["dead_lettered"] == 1
    source.set(2, "no key", source.now())  # still bad, another version (its epoch changed)
    assert run_cycle(source, stream, sql=sql, **DEAD)["dead_lettered"] == 1
    epochs = [int(d["epoch"]) for d in read_dead(redis_client, stream)]
    assert len(epochs) == 2 and epochs[0] < epochs[1]


def test_a_cycle_failing_after_its_dead_letters_neither_loses_nor_repeats_any(
    source, stream, redis_client, monkeypatch
):
    """The cycle dies just after the dead-letter script ran (its reply lost): nothing is committed; the
    rerun re-reads the window, appends no second dead letter and no second message."""
    at = source.now() - timedelta(minutes=1)
    source.insert([(100, "c100", at)])
    sql = _bad_sql(source) + " ORDER BY updated_at"
    run_cycle(source, stream, sql=sql, **DEAD)  # a watermark: what follows is a window
    mark = watermark(redis_client, stream)
    rows = [(i, "no key" if i in (3, 23) else f"c{i}", at + timedelta(milliseconds=i)) for i in range(1, 31)]
    source.insert(rows)
    real = RedisStreamHook.dead_letter
    calls = []

    def dies_after_the_second(self, *args, **kwargs):
        sent = real(self, *args, **kwargs)
        calls.append(sent)
        if len(calls) == 2:
            raise ConnectionError("worker lost after the dead letters were appended")
        return sent

    monkeypatch.setattr(RedisStreamHook, "dead_letter", dies_after_the_second)
    with pytest.raises(ConnectionError):
        run_cycle(source, stream, sql=sql, batch_size=10, **DEAD)
    assert calls == [1, 1] and watermark(redis_client, stream) == mark
    monkeypatch.setattr(RedisStreamHook, "dead_letter", real)
    rerun = run_cycle(source, stream, sql=sql, batch_size=10, **DEAD)
    assert rerun["dead_lettered"] == 0 and watermark(redis_client, stream) > mark
    assert len(read_dead(redis_client, stream)) == 2
    messages = read_stream(redis_client, stream)
    assert sorted(int(m["pkey"]) for m in messages) == [i for i in range(1, 31) if i not in (3, 23)] + [100]


@pytest.mark.parametrize("on_bad_row", ["fail", "dead_letter"])
@pytest.mark.parametrize("bad", ["no epoch", "no key"])
def test_a_bad_row_in_a_middle_chunk_of_the_first_load(
    source, stream, redis_client, monkeypatch, bad, on_bad_row
):
    _middle_chunk(source, stream, redis_client, monkeypatch, bad, on_bad_row)


@pytest.mark.parametrize("on_bad_row", ["fail", "dead_letter"])
def test_an_unencodable_value_in_a_middle_chunk_of_the_first_load(
    pg_table, stream, redis_client, monkeypatch, on_bad_row
):
    """Only Postgres returns a value with no JSON form here (a range)."""
    _middle_chunk(pg_table, stream, redis_client, monkeypatch, "range", on_bad_row)


def _middle_chunk(source, stream, redis_client, monkeypatch, bad: str, on_bad_row: str) -> None:
    """Three chunks, the bad row in the second. fail: nothing committed, the window's error.
    dead_letter: every good row once, one dead letter, the watermark committed; a resumed or repeated
    first load adds no second letter; the fixed row is emitted by the next cycle."""
    base = source.now() - timedelta(hours=2)
    _fill(source, 250, base)
    source.set(150, bad, base + timedelta(milliseconds=150))  # its epoch as filled: in the second chunk
    sql = _bad_sql(source, unreadable_epoch=False)
    chunked = dict(sql=sql, snapshot_chunk_size=100, batch_size=50, on_bad_row=on_bad_row)
    if on_bad_row == "fail":
        column = {"no epoch": "updated_at", "no key": "id", "range": "location"}[bad]
        with pytest.raises(DbStreamInputError, match=rf"column '{column}' of row \d+"):
            run_cycle(source, stream, **chunked)
        assert watermark(redis_client, stream) is None and read_dead(redis_client, stream) == []
        assert redis_client.xlen(stream) < 250
        return

    figures = run_cycle(source, stream, **chunked)
    assert (figures["emitted"], figures["dead_lettered"]) == (249, 1)
    assert watermark(redis_client, stream) is not None
    (letter,) = read_dead(redis_client, stream)
    assert json.loads(letter["values"])["name"] == bad
    messages = read_stream(redis_client, stream)
    assert sorted(int(m["pkey"]) for m in messages) == [i for i in range(1, 251) if i != 150]

    # A first load again over the same rows (the state forgotten, as a reset does; dead_seen too) and one
    # killed before its commit then resumed: the dead stream holds one letter per first load, no more.
    make_operator(source, stream, **chunked).execute(
        context={"params": {"action": "reset", "confirm_reset": stream}, "run_id": "reset1"}
    )
    assert len(read_dead(redis_client, stream)) == 2  # the reset's first load dead-letters it again
    real_commit = RedisStreamHook.commit

    def killed(*args, **kwargs):
        raise ConnectionError("worker killed before the first load's commit")

    monkeypatch.setattr(RedisStreamHook, "commit", killed)
    with pytest.raises(ConnectionError):
        make_operator(source, stream, **chunked).execute(
            context={"params": {"action": "reset", "confirm_reset": stream}, "run_id": "reset2"}
        )
    monkeypatch.setattr(RedisStreamHook, "commit", real_commit)
    assert len(read_dead(redis_client, stream)) == 3 and watermark(redis_client, stream) is None
    resumed = run_cycle(source, stream, **chunked)
    assert resumed["dead_lettered"] == 0 and watermark(redis_client, stream) is not None
    assert len(read_dead(redis_client, stream)) == 3

    source.set(150, "fixed", source.now())
    fixed = run_cycle(source, stream, **chunked)
    assert (fixed["emitted"], fixed["dead_lettered"]) == (1, 0)
    last = {m["pkey"]: json.loads(m["payload"])["name"] for m in read_stream(redis_client, stream)}
    assert last["150"] == "fixed" and len(last) == 250


def test_rows_without_a_key_are_read_once_apart_from_the_chunks(source, stream, redis_client):
    """A chunk's worth of rows with no key: read once by the unpaged query, never by a chunk (where
    one would end a chunk as a cursor), and the chunks after them are read all the same."""
    base = source.now() - timedelta(hours=2)
    _fill(source, 300, base)
    for pkey in range(101, 201):
        source.set(pkey, "no key", base + timedelta(milliseconds=pkey))
    sql = _bad_sql(source, unreadable_epoch=False)
    figures = run_cycle(source, stream, sql=sql, snapshot_chunk_size=100, batch_size=50, **DEAD)
    assert (figures["rows_read"], figures["emitted"], figures["dead_lettered"]) == (300, 200, 100)
    assert len({m["pkey"] for m in read_stream(redis_client, stream)}) == 200


def test_replay_sends_the_bad_rows_of_its_range_again_marked(source, stream, redis_client):
    at = source.now() - timedelta(minutes=10)
    source.insert([(i, "no epoch" if i == 2 else f"c{i}", at + timedelta(seconds=i)) for i in range(1, 6)])
    sql = _bad_sql(source)
    run_cycle(source, stream, sql=sql, **DEAD)
    with pytest.raises(DbStreamInputError, match=r"column 'updated_at' of row \d+ \(pkey '2'\) is NULL"):
        make_operator(source, stream, sql=sql).execute(
            context={"params": {"action": "replay", "replay_from": at.isoformat()}, "run_id": "replay0"}
        )
    figures = make_operator(source, stream, sql=sql, **DEAD).execute(
        context={"params": {"action": "replay", "replay_from": at.isoformat()}, "run_id": "replay1"}
    )
    assert (figures["replayed"], figures["dead_lettered"]) == (4, 1)
    letters = read_dead(redis_client, stream)
    assert len(letters) == 2 and "replay" not in letters[0] and letters[1]["replay"] == "replay1"
    assert letters[1]["values"] == letters[0]["values"]
    assert run_cycle(source, stream, sql=sql, **DEAD)["dead_lettered"] == 0  # replay left dead_seen alone


def test_a_missing_column_still_fails_the_cycle(source, stream, redis_client):
    """A missing column is the whole query's problem, not a row's: never dead-lettered."""
    source.insert([(1, "c1", source.now())])
    with pytest.raises(DbStreamInputError, match=r"no column 'customer_id'; it returned \['id', 'name'"):
        run_cycle(source, stream, pkey_column="customer_id", **DEAD)
    with pytest.raises(DbStreamInputError, match=r"no column 'customer_id'; it returned \['id', 'name'"):
        run_cycle(source, stream, pkey_column="customer_id", sql=source.sql + " AND 1 = 0", **DEAD)
    assert read_dead(redis_client, stream) == [] and watermark(redis_client, stream) is None


def test_an_unencodable_key_names_its_column_type_and_what_to_do(pg_table, stream, redis_client):
    pg_table.insert([(1, "a", pg_table.now()), (2, "b", pg_table.now())])
    sql = pg_table.sql.replace("SELECT id,", "SELECT int8range(id, id + 1) AS id,")
    for pkey_column in ("id", ["name", "id"]):
        with pytest.raises(DbStreamInputError) as err:
            run_cycle(pg_table, stream, sql=sql, pkey_column=pkey_column, snapshot_chunk_size=None)
        message = str(err.value)
        assert "column 'id' of row 1 Range value has no exact JSON form, so it cannot be a pkey" in message
        assert "cast it in the SQL (e.g. to text)" in message
    assert redis_client.xlen(stream) == 0 and watermark(redis_client, stream) is None
    figures = run_cycle(pg_table, stream, sql=sql, snapshot_chunk_size=None, **DEAD)
    assert (figures["emitted"], figures["dead_lettered"]) == (0, 2)
    letters = read_dead(redis_client, stream)
    assert [json.loads(d["values"])["id"] for d in letters] == ["[1, 2)", "[2, 3)"]
    assert all(d["column"] == "id" and "pkey" not in d and "Range value" in d["error"] for d in letters)
