"""A redis connection read into client arguments once, for the sync hook and the async trigger alike."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.asyncio.cluster
from airflow.sdk import Connection

from airflow_dbstream.hooks.redis_client import async_client, client_args


def conn(**kwargs) -> Connection:
    return Connection(conn_id="target", conn_type="redis", **kwargs)


def test_host_port_acl_user_password_db_and_tls_extras():
    extra = '{"db": "3", "ssl": "true", "ssl_ca_certs": "/ca.crt", "ssl_cert_reqs": "required", "x": 1}'
    args = client_args(conn(host="h", port=6380, login="u", password="s3cret-pw", extra=extra), "target")
    kw = args.kwargs()
    assert {k: kw[k] for k in ("host", "port", "username", "password", "db")} == {
        "host": "h", "port": 6380, "username": "u", "password": "s3cret-pw", "db": 3,
    }  # fmt: skip
    assert args.ssl == {"ssl": True, "ssl_ca_certs": "/ca.crt", "ssl_cert_reqs": "required"}
    assert "s3cret-pw" not in repr(args)  # the password never reaches a log line through the arguments
    client = async_client(args)
    assert isinstance(client, redis.asyncio.Redis)
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.crt"


def test_defaults_no_password_as_the_provider_reads_none():
    args = client_args(conn(host="h", password="None"), "target")
    assert (args.port, args.password, args.username, args.kwargs()["db"]) == (6379, None, None, 0)


def test_cluster_with_startup_nodes():
    args = client_args(
        conn(host="a", port=7000, extra='{"cluster": true, "startup_nodes": "b:7001, c"}'), "t"
    )
    assert args.cluster and args.startup_nodes == (("b", 7001), ("c", 6379))
    assert "db" not in args.kwargs()
    assert isinstance(async_client(args), redis.asyncio.cluster.RedisCluster)


def test_cluster_refuses_a_db_other_than_0_naming_the_connection():
    with pytest.raises(ValueError, match="'target' sets `db` to 2, but Redis in cluster mode"):
        client_args(conn(host="a", extra='{"cluster": true, "db": 2}'), "target")


@pytest.mark.parametrize("nodes", ["b:x", ":7001"])
def test_a_bad_startup_node_names_the_connection_and_entry(nodes):
    with pytest.raises(ValueError, match=f"Redis connection 'target': entry '{nodes}' of `startup_nodes`"):
        client_args(conn(host="a", extra=f'{{"cluster": true, "startup_nodes": "{nodes}"}}'), "target")
