"""Pure parts of the fault handling: which errors are retried, what the permanent ones say."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from airflow_dbstream.core.errors import DbStreamRedisError, LockLostError, RedisPermissionError
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.scripts import script_source


def test_transient_errors_are_retried_then_reported(monkeypatch):
    monkeypatch.setattr(faults.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise rx.ConnectionError("reset by peer")
        return "ok"

    assert faults.call("emit", "s", flaky, delays=(0.1, 0.2, 0.4)) == "ok"
    assert len(calls) == 3

    def down():
        raise rx.BusyLoadingError("LOADING")

    with pytest.raises(DbStreamRedisError, match="did not answer the commit call after 3 attempts"):
        faults.call("commit", "s", down, delays=(0.1, 0.2))


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
        faults.call("emit", "orders", refused, delays=(0.1,))
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
