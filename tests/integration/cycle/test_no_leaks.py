"""Nothing leaks: names are validated, values bound, and no password or payload reaches INFO logs."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from airflow_dbstream.core.errors import DbStreamInputError, DbStreamRedisError
from airflow_dbstream.core.keys import StreamKeys
from tests.integration.conftest import read_stream, run_cycle, set_connection

pytestmark = pytest.mark.integration

HOSTILE_STREAM_NAMES = [
    "orders\r\nFLUSHALL",
    "orders\n",
    "orders FLUSHALL",
    "orders;DEL x",
    "orders'--",
    "*",
    "",
    "x" * 201,
    "orders\x00",
]


@pytest.mark.parametrize("name", HOSTILE_STREAM_NAMES)
def test_hostile_stream_names_are_refused_before_any_call(pg_table, name, redis_client):
    with pytest.raises(DbStreamInputError, match="Invalid stream name"):
        StreamKeys.for_stream(name)
    with pytest.raises(DbStreamInputError, match="Invalid stream name"):
        run_cycle(pg_table, name)


def test_parameters_and_variant_are_bound_values_never_code(pg_table, stream, redis_client):
    pg_table.insert([(1, "alice", pg_table.now() - timedelta(minutes=1))])
    hostile = "x'; DROP TABLE " + pg_table.name + "; --"
    variant = "v1\r\nFLUSHALL\r\n"
    canary = f"canary:{uuid.uuid4().hex}"
    redis_client.set(canary, "alive", ex=60)
    sql = pg_table.sql + " AND name <> %(name)s"
    figures = run_cycle(pg_table, stream, sql=sql, parameters={"name": hostile}, variant=variant)
    assert figures["emitted"] == 1
    assert pg_table.db.execute(f"SELECT count(*) FROM {pg_table.name}").fetchone()[0] == 1
    assert redis_client.get(canary) == b"alive"
    assert read_stream(redis_client, stream)[0]["variant"] == variant  # stored verbatim, as data


def test_no_password_anywhere_and_no_payload_at_info(pg_table, own_redis, monkeypatch, capfd, caplog):
    password = f"pw-{uuid.uuid4().hex}"
    secret = f"payload-{uuid.uuid4().hex}"
    server = own_redis("--requirepass", password)
    set_connection(monkeypatch, "redis_pw", server.connection() | {"password": password})
    pg_table.insert([(1, secret, pg_table.now() - timedelta(minutes=1))])
    caplog.set_level(logging.DEBUG)

    run_cycle(pg_table, "leaks:ok", redis_conn_id="redis_pw")
    set_connection(monkeypatch, "redis_pw", server.connection() | {"password": password + "-wrong"})
    with pytest.raises(DbStreamRedisError) as failure:
        run_cycle(pg_table, "leaks:wrong", redis_conn_id="redis_pw")

    assert password not in str(failure.value)
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert password not in text
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    loud_lines = [line for line in (out.out + out.err).splitlines() if "[debug" not in line]
    assert any("Cycle of stream leaks:ok" in line for line in loud_lines), text[-3000:]
    assert not any(secret in r.getMessage() for r in loud)
    assert not any(secret in line for line in loud_lines)
    assert server.admin(password=password).xlen("leaks:ok") == 1
