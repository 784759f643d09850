"""The redis provider's connection as redis-py client arguments, for the sync hook and the async trigger.

RedisHook reads host, port, ACL user, password, ``db``, the ``ssl*`` extras, ``cluster`` and
``startup_nodes`` from a ``redis`` connection and builds a sync client; this module reads them the same
way once, so the hook (redis.Redis / redis.cluster.RedisCluster) and the trigger (redis.asyncio) connect
to the same server with the same TLS and credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from airflow.providers.redis.hooks.redis import DEFAULT_REDIS_PORT, DriverInfo
from airflow.providers.redis.hooks.redis import provider_version as redis_provider_version

from airflow_dbstream import __version__

# The extras RedisHook passes to redis-py as they are.
SSL_EXTRAS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


@dataclass(frozen=True)
class ClientArgs:
    """What a redis-py client needs from one Airflow connection."""

    conn_id: str
    host: str | None
    port: int
    username: str | None
    password: str | None = field(repr=False)
    db: int | None
    cluster: bool
    startup_nodes: tuple[tuple[str, int], ...]
    ssl: dict[str, Any]

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to redis.Redis, RedisCluster and their asyncio twins."""
        kw: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            **self.ssl,
        }
        if DriverInfo is not None:  # CLIENT SETINFO names the provider and this package (redis-py >= 7)
            kw["driver_info"] = (
                DriverInfo()
                .add_upstream_driver("apache-airflow-providers-redis", redis_provider_version)
                .add_upstream_driver("airflow-dbstream", __version__)
            )
        if not self.cluster:
            kw["db"] = self.db or 0
        return kw


def client_args(conn: Any, conn_id: str) -> ClientArgs:
    """Read a redis connection as RedisHook.get_conn does; errors name the connection and the fix."""
    extra = conn.extra_dejson
    db = extra.get("db")
    cluster = _flag(extra.get("cluster", False))
    if isinstance(db, str) and db.strip():
        db = int(db)  # URI extras arrive as strings
    if cluster and db not in (None, 0, ""):
        raise ValueError(
            f"Redis connection {conn_id!r} sets `db` to {db!r}, but Redis in cluster mode only supports "
            "database 0. Remove `db` from the connection extra."
        )
    password = None if str(conn.password).lower() in ("none", "false", "") else conn.password
    ssl = {name: extra[name] for name in SSL_EXTRAS if name in extra}
    if "ssl" in ssl:
        ssl["ssl"] = _flag(ssl["ssl"])
    return ClientArgs(
        conn_id=conn_id,
        host=conn.host,
        port=int(conn.port or DEFAULT_REDIS_PORT),
        username=conn.login or None,
        password=password,
        db=int(db) if db not in (None, "") else None,
        cluster=cluster,
        startup_nodes=_startup_nodes(extra.get("startup_nodes"), conn_id),
        ssl=ssl,
    )


def sync_client(args: ClientArgs) -> redis.Redis | redis.cluster.RedisCluster:
    if args.cluster:
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in args.startup_nodes]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **args.kwargs())
    return redis.Redis(**args.kwargs())


def async_client(args: ClientArgs, **extra: Any) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """The asyncio client of the same server; ``extra`` adds client options (timeouts, decoding)."""
    if args.cluster:
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in args.startup_nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes or None, **args.kwargs(), **extra)
    return redis.asyncio.Redis(**args.kwargs(), **extra)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _startup_nodes(value: Any, conn_id: str) -> tuple[tuple[str, int], ...]:
    """``host[:port],...`` as RedisHook parses it."""
    if not value:
        return ()
    if not isinstance(value, str):
        raise ValueError(
            f"Redis connection {conn_id!r}: the `startup_nodes` extra must be a comma-separated string of "
            f"`host:port` entries, got {value!r}."
        )
    nodes = []
    for entry in value.split(","):
        host, _, port = entry.strip().partition(":")
        if not host:
            raise ValueError(
                f"Redis connection {conn_id!r}: entry {entry!r} of `startup_nodes` has no host; "
                "expected `host:port`."
            )
        try:
            nodes.append((host, int(port) if port else DEFAULT_REDIS_PORT))
        except ValueError:
            raise ValueError(
                f"Redis connection {conn_id!r}: entry {entry!r} of `startup_nodes` has an invalid port; "
                "expected `host:port`."
            ) from None
    return tuple(nodes)
