"""Least privilege (docs/reliability.md's ACL, exactly) and Redis over TLS, on servers these tests start."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_dbstream.core.acl import CYCLE_COMMANDS, acl_rules
from airflow_dbstream.core.errors import DbStreamRedisError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks import lease
from tests.integration.conftest import PostgresTable, run_cycle, set_connection
from tests.integration.hooks.scenarios import SCENARIOS, Target, run_all
from tests.integration.redis_servers import TlsFiles

pytestmark = pytest.mark.integration

PASSWORD = "acl-" + uuid.uuid4().hex


def _user(server, *rules: str) -> None:
    admin = server.admin()
    admin.acl_deluser("dbstream")
    admin.execute_command("ACL", "SETUSER", "dbstream", "on", f">{PASSWORD}", *rules)


@pytest.fixture
def acl_server(own_redis, monkeypatch):
    server = own_redis()
    spec = server.connection() | {"login": "dbstream", "password": PASSWORD}
    set_connection(monkeypatch, "redis_acl", spec)
    return server


def test_all_scenarios_run_as_the_documented_least_privilege_user(acl_server, monkeypatch):
    _user(acl_server, *acl_rules("acl:*"))
    target = Target(client=acl_server.admin(), conn_id="redis_acl")
    assert run_all(lambda: PostgresTable(monkeypatch), target, ["acl:one", "acl:{two}"]) == 2 * len(SCENARIOS)
    # the user really is confined: other keys and other commands are refused
    user = acl_server.admin(username="dbstream", password=PASSWORD)
    with pytest.raises(Exception, match="no permissions"):
        user.get("not-a-stream-key")
    with pytest.raises(Exception, match="no permissions"):
        user.flushall()


def _every_command_path(table, server, stream: str) -> None:
    """A busy lock (PTTL), a flushed script cache (SCRIPT LOAD), a snapshot that trims, a re-read;
    the lease renewed before every batch (PEXPIRE), as in a cycle longer than a sixth of its lease."""
    admin = server.admin()
    lock = StreamKeys.for_stream(stream).lock
    admin.set(lock, "someone-else", px=60_000)
    with pytest.raises(AirflowSkipException):
        run_cycle(table, stream, redis_conn_id="redis_acl")
    admin.delete(lock)
    now = table.now()
    table.insert([(i, f"old-{i}", now - timedelta(hours=3, seconds=i)) for i in range(1, 21)])
    table.insert([(i, f"new-{i}", now - timedelta(seconds=i)) for i in range(100, 120)])
    for _ in range(2):
        admin.script_flush()
        run_cycle(table, stream, redis_conn_id="redis_acl", lookback=timedelta(hours=1))
    assert admin.xlen(stream) == 40


@pytest.mark.parametrize("missing", CYCLE_COMMANDS)
def test_a_user_missing_one_permission_gets_a_clear_error(acl_server, pg_table, missing, monkeypatch):
    monkeypatch.setattr(lease, "RENEW_AFTER", 0)
    stream = f"acl:{uuid.uuid4().hex[:8]}"
    _user(acl_server, *acl_rules("acl:*"), f"-{missing}")
    with pytest.raises(DbStreamRedisError) as failure:
        _every_command_path(pg_table, acl_server, stream)
    message = str(failure.value)
    assert f"'{missing}'" in message, message  # Redis names the command it refused
    assert "docs/reliability.md" in message and "Least privilege" in message and stream in message
    after_commit = ("zrange", "zrem", "hdel", "del", "time", "zcard", "xlen", "xinfo|groups")
    # trim, release and status run after the commit; everything else is needed before it
    if missing not in after_commit:
        assert acl_server.admin().hget(StreamKeys.for_stream(stream).state, "watermark") is None


def test_the_exercise_passes_with_every_permission(acl_server, pg_table, monkeypatch):
    monkeypatch.setattr(lease, "RENEW_AFTER", 0)
    _user(acl_server, *acl_rules("acl:*"))
    _every_command_path(pg_table, acl_server, f"acl:{uuid.uuid4().hex[:8]}")


def test_all_scenarios_over_tls_with_the_connection_ssl_extras(own_redis, tmp_path, monkeypatch):
    server = own_redis(tls=TlsFiles(tmp_path / "tls"))
    spec = server.connection(ssl_check_hostname=True)
    assert spec["extra"]["ssl"] is True and spec["extra"]["ssl_ca_certs"].endswith("ca.crt")
    set_connection(monkeypatch, "redis_tls", spec)
    target = Target(client=server.admin(), conn_id="redis_tls")
    assert run_all(lambda: PostgresTable(monkeypatch), target, ["tls:one"]) == len(SCENARIOS)
    # the server speaks TLS only: a plain-text client is not served
    plain = server.admin(ssl=False, socket_timeout=1)
    with pytest.raises(Exception):  # noqa: B017
        plain.ping()
