"""The stream as an Airflow Asset: what a consumer DAG schedules on, and what the operators emit.

The operators declare ``AssetAlias("dbstream:<redis_conn_id>:<stream>")`` as their outlet (known at
parse time, no I/O) and, only when a run appended something, add one event for the concrete
``Asset("redis://host:port/db/<stream>")`` through it, its host read from the connection when the task
runs. A static Asset outlet would get an event on every success, quiet cycles included.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_dbstream.core.assets import DEFAULT_PORT, StreamAddress, address, alias_name, parse
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks.redis_stream import RedisStreamHook


def connection_address(redis_conn_id: str, stream: str) -> StreamAddress:
    """The stream's address from its Redis connection (host, port, ``db`` extra; db 0 on a cluster)."""
    connection = BaseHook.get_connection(redis_conn_id)
    return address(connection.host, connection.port, connection.extra_dejson, stream)


def stream_asset(
    stream: str,
    redis_conn_id: str = RedisStreamHook.default_conn_name,
    *,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    db: int = 0,
) -> Asset:
    """The Asset a DAG schedules on to run after a cycle appended to ``stream``:
    ``schedule=[stream_asset("customers", redis_conn_id="redis_default")]``.

    With ``redis_conn_id`` it reads that connection (not Redis) where the DAG file is parsed; with
    ``host`` (and ``port``, ``db``) it reads nothing.
    """
    if host is None:
        try:
            where = connection_address(redis_conn_id, stream)
        except AirflowNotFoundException as exc:
            raise AirflowNotFoundException(
                f"stream_asset({stream!r}): the Redis connection {redis_conn_id!r} is not defined where "
                "this DAG file is parsed. Define it there (as the stream's operators see it), or name the "
                "server: stream_asset(stream, host=..., port=..., db=...)."
            ) from exc
    else:
        where = address(host, port, {"db": db}, stream)
    return Asset(name=where.uri, uri=where.uri)


def stream_alias(stream: str, redis_conn_id: str) -> AssetAlias:
    """The outlet a stream's operators declare; its events are added at run time (``emit_event``)."""
    return AssetAlias(name=alias_name(redis_conn_id, stream))


def emit_event(
    context: Any,
    redis: RedisStreamHook,
    keys: StreamKeys,
    redis_conn_id: str,
    alias: str,
    extra: dict[str, Any] | None,
    log: logging.Logger,
) -> dict[str, Any] | None:
    """Add this run's one Asset event (``extra`` plus the stream's last entry id) through the alias.

    Nothing when the run appended nothing (``extra`` None) or runs outside Airflow (no outlet_events).
    """
    events = context.get("outlet_events") if context else None
    if extra is None or events is None:
        return None
    where = connection_address(redis_conn_id, keys.stream)
    extra = {**extra, "last_entry_id": redis.last_entry_id(keys)}
    events[AssetAlias(name=alias)].add(Asset(name=where.uri, uri=where.uri), extra=extra)
    log.debug("Stream %s: Asset event for %s: %s", keys.stream, where.uri, extra)
    return extra


def create_asset(
    *, host: str, stream: str, port: int = DEFAULT_PORT, db: int = 0, extra: dict | None = None
) -> Asset:
    """The provider's Asset factory for the ``redis`` scheme (Airflow's asset-uris ``factory``)."""
    where = address(host, port, {"db": db}, stream)
    return Asset(name=where.uri, uri=where.uri, extra=extra)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """The stream Asset as OpenLineage names it (operators/lineage.py): ``redis://host:port/db``, key."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    where = parse(asset.uri)
    return Dataset(namespace=where.namespace, name=where.stream)
