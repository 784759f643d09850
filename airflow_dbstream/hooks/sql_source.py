"""The source side's hook: the common-sql DbApiHook of a connection id, or a clear refusal."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_dbstream.core.errors import DbStreamInputError

# Connection types whose provider's distribution is not apache-airflow-providers-<type>.
PROVIDER_OF_TYPE = {
    "mssql": "microsoft-mssql",
    "hiveserver2": "apache-hive",
    "hive_cli": "apache-hive",
    "impala": "apache-impala",
    "druid": "apache-druid",
    "drill": "apache-drill",
    "pinot_broker": "apache-pinot",
    "gcpbigquery": "google",
    "gcpcloudsqldb": "google",
    "google_cloud_platform": "google",
    "redshift": "amazon",
    "aws": "amazon",
    "azure_synapse": "microsoft-azure",
    "azure_data_explorer": "microsoft-azure",
    "postgresql": "postgres",
}


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
    conn_type = connection.conn_type
    if not conn_type:
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} has no connection type: set it (postgres, mysql, sqlite, ...)."
        )
    known = registered_hook(conn_type)
    if known is False:
        package = provider_package(conn_type)
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is a {conn_type!r} connection, a type no installed Airflow "
            f"provider defines. If it is a SQL database, install its provider where the tasks run "
            f"(pip install {package}); otherwise point sql_conn_id at a SQL connection (postgres, "
            "mysql, sqlite, mssql, ...: any common-sql DbApiHook)."
        )
    try:
        hook = connection.get_hook()
    except ImportError as exc:
        package = known if isinstance(known, str) else provider_package(conn_type)
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r}: the hook of {conn_type!r} connections, from {package}, could "
            f"not be imported ({exc}); install what it lacks (pip install {package} and its database "
            "driver) where the tasks run."
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise DbStreamInputError(
            f"sql_conn_id {sql_conn_id!r} is a {connection.conn_type!r} connection whose hook "
            f"{type(hook).__name__} is not a SQL (DbApiHook) hook; point it at a SQL database."
        )
    return hook


def registered_hook(conn_type: str) -> str | bool | None:
    """What Airflow's provider manager knows of a connection type: the package that registers it,
    True (registered, package unknown), False (no installed provider registers it) or None (cannot tell)."""
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        manager = ProvidersManagerTaskRuntime()
        hooks = manager.hooks
        if conn_type not in hooks:
            return False
        provider = getattr(manager, "_hook_provider_dict", {}).get(conn_type)
    except Exception:  # another Airflow's manager: get_hook() says what it says
        return None
    return getattr(provider, "package_name", None) or True


def provider_package(conn_type: str) -> str:
    """The distribution that usually provides a connection type: apache-airflow-providers-<type>."""
    name = PROVIDER_OF_TYPE.get(conn_type, conn_type.replace("_", "-"))
    return f"apache-airflow-providers-{name}"
