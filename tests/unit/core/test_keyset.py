"""The snapshot's SQL wrapping, its cursor's round trip, soft-delete marks and progress text."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_dbstream.core.deletes import is_deleted
from airflow_dbstream.core.keyset import (
    chunk_sql,
    count_sql,
    cursor_params,
    dump_cursor,
    load_cursor,
    unpaged_sql,
)
from airflow_dbstream.cycle.snapshot import eta_text, progress


def test_first_chunk_wraps_the_sql_unchanged_and_orders_by_epoch_then_key():
    sql = chunk_sql("SELECT * FROM t WHERE u >= :window_start;  \n", ["u", "id"], after=False, limit=10)
    assert sql == (
        "SELECT * FROM (\nSELECT * FROM t WHERE u >= :window_start\n) AS dbstream_snapshot\n"
        'WHERE "u" IS NOT NULL AND "id" IS NOT NULL\nORDER BY "u", "id"\nLIMIT 10'
    )


def test_next_chunk_compares_after_the_cursor_in_the_sqls_own_placeholder_style():
    named = chunk_sql("SELECT 1 WHERE u >= :window_start", ["u", "id"], after=True, limit=5)
    assert (
        '"u" >= :dbstream_k0 AND (("u" > :dbstream_k0) OR ("u" = :dbstream_k0 AND "id" > :dbstream_k1))'
        in named
    )
    pyformat = chunk_sql("SELECT 1 WHERE u >= %(window_start)s", ["u", "id"], after=True, limit=5)
    assert '"u" >= %(dbstream_k0)s AND' in pyformat
    backtick = chunk_sql("SELECT 1 WHERE u >= %(window_start)s", ["u`x"], after=True, limit=5, quote="`")
    assert "`u``x` > %(dbstream_k0)s" in backtick


def test_keyset_pages_visit_every_row_once_with_ties_on_epoch_and_composite_keys():
    """Run the generated SQL on SQLite itself: epochs with many ties, a two-column key, a comment."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (r TEXT, id INTEGER, u TEXT, PRIMARY KEY (r, id))")
    rows = [(r, i, f"2026-01-01 00:00:0{i % 3}") for r in ("eu", "us", "asia") for i in range(40)]
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    author = "SELECT r, id, u FROM t WHERE u >= :window_start -- trailing comment"
    columns = ["u", "r", "id"]
    seen, cursor = [], None
    while True:
        sql = chunk_sql(author, columns, after=cursor is not None, limit=7)
        page = db.execute(sql, {"window_start": "2000", **cursor_params(cursor or [])}).fetchall()
        if not page:
            break
        seen += page
        cursor = load_cursor(dump_cursor([page[-1][2], page[-1][0], page[-1][1]]))
    assert sorted(seen) == sorted(rows) and len(seen) == len(rows)
    assert db.execute(count_sql(author), {"window_start": "2000"}).fetchone() == (120,)


def test_every_wrapper_takes_the_sql_without_its_trailing_semicolon_and_comments():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER, u TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"2026-01-01 00:00:0{i}") for i in range(5)])
    author = "SELECT id, u FROM t WHERE u >= :window_start; -- the last line\n/* and a block */"
    chunk = chunk_sql(author, ["u", "id"], after=False, limit=10, dialect="sqlite")
    assert ";" not in chunk and "the last line" not in chunk
    assert len(db.execute(chunk, {"window_start": "2000"}).fetchall()) == 5
    assert db.execute(count_sql(author, "sqlite"), {"window_start": "2000"}).fetchone() == (5,)


def test_the_rows_no_chunk_pages_are_those_with_a_null_epoch_or_key():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (r TEXT, id INTEGER, u TEXT)")
    rows = [("eu", 1, "2026"), ("eu", None, "2026"), (None, 3, "2026"), ("us", 4, None), ("us", 5, "2027")]
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    sql = unpaged_sql("SELECT * FROM t WHERE u >= :window_start OR u IS NULL;", ["u", "r", "id"])
    assert sorted(db.execute(sql, {"window_start": "2000"}).fetchall(), key=repr) == sorted(
        rows[1:4], key=repr
    )


@pytest.mark.parametrize(
    "value",
    [
        7,
        True,
        2.5,
        Decimal("1.10"),
        "a\"b'c",
        datetime(2026, 1, 2, 3, 4, 5, 6),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        date(2026, 1, 2),
        uuid.UUID(int=5),
        b"\x00\xff",
    ],
)
def test_cursor_values_keep_their_type(value):
    (back,) = load_cursor(dump_cursor([value]))
    assert back == value and type(back) is type(value)


def test_unsupported_cursor_value_says_what_to_do():
    with pytest.raises(TypeError, match="snapshot_chunk_size=None"):
        dump_cursor([object()])


@pytest.mark.parametrize("value", [None, False, 0, 0.0, "", "0", "f", "False", "n", "NO"])
def test_live_marks(value):
    assert not is_deleted(value)


@pytest.mark.parametrize("value", [True, 1, "t", "true", "Y", datetime(2026, 1, 1), "2026-01-01 00:00:00"])
def test_deleted_marks(value):
    assert is_deleted(value)


def test_progress_rate_and_time_left():
    assert progress(done=300, total=1000, run_rows=200, run_seconds=2.0) == (100.0, 7.0)
    assert progress(done=300, total=None, run_rows=200, run_seconds=2.0) == (100.0, None)
    assert eta_text(3725) == "1h02m05s" and eta_text(65) == "1m05s" and eta_text(None) == "unknown"


def test_chunks_page_only_the_rows_with_an_epoch_and_a_key():
    """A NULL key passes 'epoch > cursor' and could end a chunk as a cursor: the chunks leave such rows
    (and NULL epochs, which SQLite sorts first) to unpaged_sql, so every row is read by one query."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER, u TEXT)")
    rows = [(i, f"2026-01-01 00:00:{i:02d}") for i in range(1, 21)] + [
        (None, "2026-01-01 00:00:30"),
        (99, None),
    ]
    db.executemany("INSERT INTO t VALUES (?, ?)", rows)
    author, columns = "SELECT id, u FROM t WHERE u >= :window_start OR u IS NULL", ["u", "id"]
    paged, cursor = [], None
    while True:
        sql = chunk_sql(author, columns, after=cursor is not None, limit=6)
        page = db.execute(sql, {"window_start": "2000", **cursor_params(cursor or [])}).fetchall()
        if not page:
            break
        paged += page
        cursor = [page[-1][1], page[-1][0]]
    unpaged = db.execute(unpaged_sql(author, columns), {"window_start": "2000"}).fetchall()
    assert sorted(paged) == rows[:20] and sorted(unpaged, key=repr) == sorted(rows[20:], key=repr)
