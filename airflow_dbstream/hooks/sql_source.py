"""The source side's hook: the common-sql DbApiHook of a connection id, or a clear refusal."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_dbstream.core.errors import DbStreamInputError


def sql_source_hook(sql_conn_id: str) -> Any:
    """The DbApiHook of ``sql_conn_id``; anything else is refused with a clear message."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        connection = BaseHook.get_connection(sql_conn_id)
    except Exception as exc:
        if type(exc).__name__ not in ("AirflowNotFoundException", "ConnectionNotFound"):
            raise
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is not defined: create it in Admin > Connections "
            f"or as AIRFLOW_CONN_{sql_conn_id.upper()}."
        ) from None
    hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is a {connection.conn_type!r} connection whose hook "
            f"{type(hook).__name__} is not a SQL (DbApiHook) hook; point it at a SQL database."
        )
    return hook
