"""The transaction guard on the real servers: a transaction that outlives lookback is not lost."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import timedelta

import MySQLdb
import psycopg
import pytest

from tests.integration.conftest import (
    MYSQL_ARGS,
    MYSQL_CONN,
    PG_CONN,
    PG_DSN,
    read_stream,
    run_cycle,
    set_connection,
)

pytestmark = pytest.mark.integration

LOOKBACK = timedelta(seconds=1)
NOW = {"postgres": "now()", "mariadb": "NOW(6)", "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')"}
TYPE = {"postgres": "timestamptz", "mariadb": "DATETIME(6)", "sqlite": "TEXT"}


def _table(db):
    name = db.table(f"id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, updated_at {TYPE[db.kind]} NOT NULL")
    sql = f"SELECT id, name, updated_at FROM {name} WHERE updated_at >= {db.param('window_start')}"
    for i in (1, 2):
        db.execute(f"INSERT INTO {name} VALUES (%s, %s, {NOW[db.kind]})", (i, f"v0-{i}"))
    return name, sql


def _writer(db, tmp_path=None):
    """A second session of the application, in a transaction of its own (not autocommit)."""
    if db.kind == "postgres":
        return psycopg.connect(PG_DSN, application_name="long-report")
    if db.kind == "mariadb":
        return MySQLdb.connect(**{**MYSQL_ARGS, "autocommit": False})
    return sqlite3.connect(db.path, isolation_level=None)


def _hold_an_update(writer, kind: str, table: str) -> None:
    """Open a transaction that changes row 1, stamped by the database's own clock, and leave it open."""
    cursor = writer.cursor()
    if kind == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    sql = f"UPDATE {table} SET name = 'late', updated_at = {NOW[kind]} WHERE id = 1"
    cursor.execute(sql.replace("%s", "?"))


def _log(capfd) -> list[str]:
    """The task log lines printed so far (Airflow's task logger writes to the process's streams)."""
    out, err = capfd.readouterr()
    return (out + err).splitlines()


def _cycles_while_others_change(db, table, sql, stream, seconds: float, **overrides) -> list[dict]:
    """Cycles about every 0.3 s for ``seconds`` while row 2 changes in autocommit: the watermark moves."""
    figures, deadline, n = [], time.monotonic() + seconds, 0
    blocked = overrides.pop("writer_open", False) and db.kind == "sqlite"  # SQLite: one writer at a time
    while time.monotonic() < deadline:
        n += 1
        if not blocked:
            db.execute(
                f"UPDATE {table} SET name = %s, updated_at = {NOW[db.kind]} WHERE id = 2", (f"v{n}-2",)
            )
        figures.append(run_cycle(db, stream, sql=sql, lookback=LOOKBACK, **overrides))
        time.sleep(0.3)
    return figures


@pytest.mark.parametrize("kind", ["postgres", "mariadb", "sqlite"])
@pytest.mark.parametrize("guard", [None, False])
def test_a_transaction_committed_long_after_lookback_is_emitted_once_with_the_guard_lost_without(
    kind, guard, databases, stream, redis_client
):
    db = databases(kind)
    table, sql = _table(db)
    setting = {"transaction_guard": guard}
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK, **setting)  # the first load
    writer = _writer(db)
    try:
        _hold_an_update(writer, kind, table)
        during = _cycles_while_others_change(db, table, sql, stream, 3.5, writer_open=True, **setting)
        writer.commit()  # 3.5 s after its stamp: more than three times the lookback
    finally:
        writer.close()
    after = _cycles_while_others_change(db, table, sql, stream, 1.0, **setting)
    late = [m for m in read_stream(redis_client, stream) if m["pkey"] == "1" and '"late"' in m["payload"]]
    if kind == "sqlite":  # no one else commits while a write transaction is open: nothing to guard
        assert len(late) == 1
        assert {f["guard"] for f in during + after} == {"off" if guard is False else "single_writer"}
    elif guard is None:  # the default: on
        assert len(late) == 1  # emitted, exactly once, although it committed after the lookback
        assert {f["guard"] for f in during} == {"on"}
        assert max(f["guard_held_seconds"] for f in during) > 1.0
        assert after[-1]["guard_held_seconds"] == 0.0  # the transaction ended: nothing holds any more
        # stamped below the (held) previous watermark, by at most lookback thanks to the hold
        assert 0 < max(f["observed_lateness_seconds"] or 0 for f in after) <= LOOKBACK.total_seconds()
    else:
        assert late == []  # the documented limit without the guard: what the guard buys
        assert {f["guard"] for f in during + after} == {"off"}


def test_the_default_is_on_where_the_source_shows_transactions(databases, stream):
    for kind, expected in (("postgres", "on"), ("mariadb", "on"), ("sqlite", "single_writer")):
        db = databases(kind)
        _table_name, sql = _table(db)
        assert run_cycle(db, stream + kind, sql=sql)["guard"] == expected, kind


def test_an_idle_in_transaction_session_holds_the_watermark_and_is_named(databases, stream, capfd):
    db = databases("postgres")
    table, sql = _table(db)
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK)
    forgotten = psycopg.connect(PG_DSN, application_name="forgotten-report")
    try:
        forgotten.execute("SELECT 1")  # only read: idle in transaction, no xid, now() = its start
        pid = forgotten.info.backend_pid
        time.sleep(1.5)
        capfd.readouterr()
        figures = _cycles_while_others_change(db, table, sql, stream, 1.0)
    finally:
        forgotten.close()
    assert figures[-1]["guard_held_seconds"] > 0.5
    assert figures[-1]["oldest_transaction_age_seconds"] > 1.5
    held = [line for line in _log(capfd) if "holds the watermark back" in line]
    assert (
        held
        and f"pid {pid}" in held[-1]
        and "forgotten-report" in held[-1]
        and "idle in transaction" in held[-1]
    )


def test_transactions_of_another_database_and_of_the_cycle_itself_do_not_hold(databases, stream, monkeypatch):
    db = databases("postgres")
    table, sql = _table(db)
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK)
    elsewhere = psycopg.connect(PG_DSN.replace("dbname=test", "dbname=postgres"))
    try:
        elsewhere.execute("SELECT 1")
        time.sleep(1.5)
        figures = _cycles_while_others_change(db, table, sql, stream, 0.8)
    finally:
        elsewhere.close()
    # The cycle's own session is inside a transaction while it reads the clock: it does not count either.
    # (other sessions of this database, if any, may show their own short transactions)
    assert all((f["oldest_transaction_age_seconds"] or 0) < 1.2 for f in figures), figures
    assert all(f["guard_held_seconds"] == 0.0 for f in figures)


def test_past_guard_max_hold_the_guard_lets_go_and_says_rows_will_be_missed(databases, stream, capfd):
    db = databases("postgres")
    table, sql = _table(db)
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK)
    forgotten = psycopg.connect(PG_DSN)
    try:
        forgotten.execute("SELECT 1")
        time.sleep(2.2)
        capfd.readouterr()
        figures = _cycles_while_others_change(
            db, table, sql, stream, 0.5, guard_max_hold=timedelta(seconds=2)
        )
    finally:
        forgotten.close()
    assert {f["guard"] for f in figures} == {"over_max_hold"}
    assert all(f["guard_held_seconds"] == 0.0 for f in figures)
    assert any("WILL BE MISSED" in line and "guard_max_hold" in line for line in _log(capfd))


@pytest.fixture
def blind_user(databases, monkeypatch):
    """A Postgres role and a MariaDB user that may read the table but not see other sessions."""
    made = []

    def make(db, table: str) -> None:
        name = f"blind_{uuid.uuid4().hex[:8]}"
        if db.kind == "postgres":
            db.execute(f'CREATE ROLE "{name}" LOGIN')
            db.execute(f'GRANT SELECT ON {table} TO "{name}"')
            set_connection(monkeypatch, "pg_blind", {**PG_CONN, "login": name})
            made.append(lambda: db.execute(f'DROP OWNED BY "{name}"; DROP ROLE "{name}"'))
        else:
            db.execute(f"CREATE USER '{name}'@'%'")
            db.execute(f"GRANT SELECT ON test.{table} TO '{name}'@'%'")
            set_connection(monkeypatch, "mysql_blind", {**MYSQL_CONN, "login": name})
            made.append(lambda: db.execute(f"DROP USER '{name}'@'%'"))
        db.conn_id = "pg_blind" if db.kind == "postgres" else "mysql_blind"

    yield make
    for drop in made:
        drop()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_user_who_cannot_see_other_sessions_is_warned_with_the_grant_and_keeps_a_fixed_lookback(
    kind, databases, blind_user, stream, redis_client, capfd
):
    db = databases(kind)
    table, sql = _table(db)
    blind_user(db, table)
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK)
    writer = _writer(db)
    try:
        _hold_an_update(writer, kind, table)
        capfd.readouterr()
        during = _cycles_while_others_change(db, table, sql, stream, 2.5)
        writer.commit()
    finally:
        writer.close()
    _cycles_while_others_change(db, table, sql, stream, 0.6)
    assert {f["guard"] for f in during} == {"blind"}
    grant = "GRANT pg_read_all_stats TO" if kind == "postgres" else "GRANT PROCESS ON *.* TO"
    warnings = [line for line in _log(capfd) if "guard is blind" in line]
    assert warnings and grant in warnings[0]
    assert [m for m in read_stream(redis_client, stream) if '"late"' in m["payload"]] == []  # today's limit
    status = json.loads(redis_client.hget("{" + stream + "}:state", "last_cycle"))
    assert status["guard"] == "blind"


def test_a_late_row_near_the_lookback_warns_while_the_guard_is_off(databases, stream, capfd):
    db = databases("postgres")
    table, sql = _table(db)
    lookback = timedelta(seconds=10)
    run_cycle(db, stream, sql=sql, lookback=lookback, transaction_guard=False)
    # An application clock 9 s behind: its row is stamped 9 s before the watermark, inside lookback.
    db.execute(f"INSERT INTO {table} VALUES (3, 'skewed', now() - interval '9 seconds')")
    capfd.readouterr()
    figures = run_cycle(db, stream, sql=sql, lookback=lookback, transaction_guard=False)
    assert figures["emitted"] == 1 and figures["observed_lateness_seconds"] > 8.0
    assert any("more than 80% of lookback" in line for line in _log(capfd))


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_first_load_held_by_the_guard_keeps_in_seen_what_the_next_window_reads_again(
    kind, databases, stream, redis_client
):
    """Found by the soak (docs/soak.md): the chunked first load trimmed ``seen`` as if its watermark
    would reach the rows it read, but the guard held it at an open transaction's start + lookback, so
    the first normal window read again, and sent a second time, rows stamped after that start."""
    db = databases(kind)
    table, sql = _table(db)
    db.execute(f"INSERT INTO {table} VALUES (3, 'v0-3', {NOW[kind]})")
    writer = _writer(db)
    try:
        _hold_an_update(writer, kind, table)  # open from here on, at the first load too
        time.sleep(0.05)
        db.execute(f"UPDATE {table} SET name = 'after-the-start', updated_at = {NOW[kind]} WHERE id = 2")
        time.sleep(2.5)  # more than lookback + the bound's one second of slack
        db.execute(f"UPDATE {table} SET name = 'newest', updated_at = {NOW[kind]} WHERE id = 3")
        first = run_cycle(db, stream, sql=sql, lookback=LOOKBACK)  # a chunked first load, held
        assert first["guard_held_seconds"] > 1.0
        run_cycle(db, stream, sql=sql, lookback=LOOKBACK)  # its window starts at the open transaction's start
    finally:
        writer.rollback()
        writer.close()
    run_cycle(db, stream, sql=sql, lookback=LOOKBACK)
    versions = [(m["pkey"], json.loads(m["payload"])["name"]) for m in read_stream(redis_client, stream)]
    assert sorted(versions) == [("1", "v0-1"), ("2", "after-the-start"), ("3", "newest")]
