"""The provider as Airflow sees it: the hook and its connection form declared as data, no warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.conftest import REDIS_CONN, run_cycle, set_connection

pytestmark = pytest.mark.integration

INSPECT = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    hook = manager.hooks["dbstream_redis"]
    widgets = {k: v.field for k, v in manager.connection_form_widgets.items() if "dbstream_redis" in k}
    behaviour = manager.field_behaviours["dbstream_redis"]
    import airflow_dbstream.hooks.redis_stream, airflow_dbstream.operators.sql_to_redis_stream
print("RESULT " + json.dumps({
    "hook": [hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name],
    "redis": manager.hooks["redis"].hook_class_name,
    "widgets": widgets, "behaviour": behaviour,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught if "dbstream" in str(w.message)
                 or "dbstream" in (w.filename or "")],
}, default=str))
"""


def test_providers_hooks_lists_the_hook_and_its_connection_type():
    proc = subprocess.run([sys.executable, "-m", "airflow", "providers", "hooks", "--output", "json"],
                          env=os.environ, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    hooks = {row["connection_type"]: row for row in json.loads(proc.stdout)}
    assert hooks["dbstream_redis"]["class"] == "airflow_dbstream.hooks.redis_stream.RedisStreamHook"
    assert hooks["dbstream_redis"]["package_name"] == "airflow-dbstream"
    assert hooks["redis"]["class"] == "airflow.providers.redis.hooks.redis.RedisHook"  # not taken over


def test_connection_form_is_data_and_nothing_warns():
    command = [sys.executable, "-W", "always", "-c", INSPECT]
    proc = subprocess.run(command, env=os.environ, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    info = json.loads(lines[0][7:])
    hook_class, conn_attr, hook_name = info["hook"]
    assert hook_class == "airflow_dbstream.hooks.redis_stream.RedisStreamHook"
    assert (conn_attr, hook_name) == ("redis_conn_id", "Redis Stream target (DB Stream)")
    assert info["redis"] == "airflow.providers.redis.hooks.redis.RedisHook"
    assert info["widgets"]["extra__dbstream_redis__db"]["schema"]["title"] == "DB"
    assert info["widgets"]["extra__dbstream_redis__ssl"]["schema"]["type"] == ["boolean", "null"]
    behaviour = info["behaviour"]
    assert behaviour["hidden_fields"] == ["schema", "extra"]
    assert behaviour["relabeling"]["login"] == "ACL user"
    assert behaviour["placeholders"]["host"] == "redis.example.com"
    assert info["warnings"] == []


def test_a_dbstream_redis_connection_works_like_a_redis_one(pg_table, stream, redis_client, monkeypatch):
    from airflow.sdk import BaseHook

    from airflow_dbstream.hooks.redis_stream import RedisStreamHook

    set_connection(monkeypatch, "stream_target", {**REDIS_CONN, "conn_type": "dbstream_redis",
                                                  "extra": {"db": 0}})  # fmt: skip
    assert isinstance(BaseHook.get_connection("stream_target").get_hook(), RedisStreamHook)
    pg_table.insert([(1, "a", pg_table.now())])
    assert run_cycle(pg_table, stream, redis_conn_id="stream_target")["emitted"] == 1
    assert redis_client.xlen(stream) == 1


def test_the_provider_owns_the_redis_asset_scheme_and_its_uris_are_canonical():
    from airflow.sdk import Asset
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    from airflow_dbstream.operators.assets import stream_asset

    manager = ProvidersManagerTaskRuntime()
    assert manager.asset_uri_handlers["redis"].__module__ == "airflow_dbstream.core.assets"
    # what a DAG author writes by hand names the same stream as the helper's Asset
    assert (
        Asset(uri="rediss://Cache.Example/crm:{orders}").uri
        == "redis://cache.example:6379/0/crm:%7Borders%7D"
    )
    assert (
        stream_asset("crm:{orders}", host="cache.example").uri
        == "redis://cache.example:6379/0/crm:%7Borders%7D"
    )
    with pytest.raises(ValueError, match="names database 0 but no stream key"):
        Asset(uri="redis://cache.example:6379/0")
    made = manager.asset_factories["redis"](host="h", port=7000, db=1, stream="orders")
    assert made.uri == made.name == "redis://h:7000/1/orders"
    dataset = manager.asset_to_openlineage_converters["redis"](made, None)
    assert (dataset.namespace, dataset.name) == ("redis://h:7000/1", "orders")  # as operators/lineage.py


def test_the_helper_reads_the_address_from_the_connection(monkeypatch):
    from airflow_dbstream.operators.assets import stream_asset

    set_connection(monkeypatch, "redis_asset", {"conn_type": "redis", "host": "Redis.Internal", "port": 6390,
                                                 "extra": {"db": 3}})  # fmt: skip
    assert (
        stream_asset("customers", redis_conn_id="redis_asset").uri
        == "redis://redis.internal:6390/3/customers"
    )


def test_the_helper_without_its_connection_says_what_to_do():
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_dbstream.operators.assets import stream_asset

    with pytest.raises(AirflowNotFoundException, match="'redis_nowhere' is not defined where this DAG file"):
        stream_asset("customers", redis_conn_id="redis_nowhere")
