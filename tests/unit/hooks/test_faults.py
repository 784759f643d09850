"""Pure parts of the fault handling: which errors are retried, what the permanent ones say."""

from __future__ import annotations

import sqlite3

import MySQLdb
import psycopg
import pytest
from redis import exceptions as rx

from airflow_dbstream.core.errors import DbStreamRedisError, LockLostError, RedisPermissionError
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.scripts import script_source


def _through_policy(fn, retries: int = 3):
    """Run ``fn`` as the hook's client does: redis-py's Retry of hooks/faults.py, then faults.call."""
    policy = faults.LoggedRetry(retries)
    return lambda: policy.call_with_retry(fn, lambda error: None)


def test_transient_errors_are_retried_then_reported(monkeypatch):
    import redis.retry

    monkeypatch.setattr(redis.retry, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise rx.ConnectionError("reset by peer")
        return "ok"

    assert faults.call("emit", "s", _through_policy(flaky)) == "ok"
    assert len(calls) == 3

    def down():
        calls.append(1)
        raise rx.BusyLoadingError("LOADING")

    calls.clear()
    with pytest.raises(DbStreamRedisError, match="did not answer the commit call, retries included"):
        faults.call("commit", "s", _through_policy(down, retries=2))
    assert len(calls) == 3  # the first attempt and two retries


def test_wrong_credentials_are_not_retried(monkeypatch):
    calls = []

    def refused():
        calls.append(1)
        raise rx.AuthenticationError("invalid username-password pair")

    with pytest.raises(DbStreamRedisError, match="refused the connection's credentials"):
        faults.call("emit", "s", _through_policy(refused))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), DbStreamRedisError,
         ["maxmemory", "`maxlen`"]),
        (rx.ResponseError("DBSTREAM_LOCK_LOST {s}:lock is no longer held"), LockLostError, ["lock_lease"]),
        (rx.NoPermissionError("this user has no permissions to run the 'xadd' command"), RedisPermissionError,
         ["'xadd'", "Least privilege"]),
    ],
)  # fmt: skip
def test_permanent_errors_fail_fast_and_say_what_to_do(error, kind, words):
    calls = []

    def refused():
        calls.append(1)
        raise error

    with pytest.raises(kind) as failure:
        faults.call("emit", "orders", _through_policy(refused))
    assert len(calls) == 1
    assert "'orders'" in str(failure.value)
    for word in words:
        assert word in str(failure.value)


def test_a_refusal_inside_a_script_names_the_command_of_its_line():
    source = script_source("emit")
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "redis.call('ZADD'" in text)
    text = f"The user executing the script can't run this command script: x, on @user_script:{line}."
    error = rx.ResponseError(text)
    assert "'zadd'" in str(faults.permanent_error("emit", "s", error, source))


def test_other_response_errors_pass_through():
    error = rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert faults.permanent_error("emit", "s", error) is error


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
        MySQLdb.OperationalError(2013, "Lost connection to server during query"),
        MySQLdb.OperationalError(1927, "Connection was killed"),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_a_lost_or_killed_source_connection_is_a_fault_a_retry_may_cure(error):
    assert faults.source_fault(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedColumn('column "idd" does not exist'),
        psycopg.errors.SyntaxError("syntax error at or near"),
        MySQLdb.OperationalError(1054, "Unknown column 'idd' in 'field list'"),
        MySQLdb.ProgrammingError(1064, "You have an error in your SQL syntax"),
        sqlite3.OperationalError("no such column: idd"),
        ValueError("not a database error"),
    ],
)
def test_a_wrong_sql_is_no_such_fault(error):
    assert not faults.source_fault(error)
