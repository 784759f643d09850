"""The SQL connection's hook, or an error that names the connection and what to do: no server needed."""

from __future__ import annotations

import json

import pytest

from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.hooks.sql_source import provider_package, registered_hook, sql_source_hook


@pytest.fixture
def connection(monkeypatch, tmp_path):
    def define(conn_id: str, **spec) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
        return conn_id

    return define


def test_a_sql_connection_gives_its_dbapi_hook(connection, tmp_path):
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    hook = sql_source_hook(connection("a_sqlite", conn_type="sqlite", host=str(tmp_path / "x.db")))
    assert isinstance(hook, DbApiHook)


def test_an_unknown_connection_id_says_where_to_define_it():
    with pytest.raises(DbStreamInputError, match=r"'no_such_db' is not defined.*AIRFLOW_CONN_NO_SUCH_DB"):
        sql_source_hook("no_such_db")


def test_a_connection_that_is_not_sql_is_refused(connection):
    with pytest.raises(
        DbStreamInputError, match=r"'cache' is a 'redis' connection .*not a SQL \(DbApiHook\)"
    ):
        sql_source_hook(connection("cache", conn_type="redis", host="127.0.0.1"))


def test_a_type_whose_provider_is_not_installed_names_the_connection_and_the_package(connection):
    with pytest.raises(DbStreamInputError) as err:
        sql_source_hook(connection("crm_api", conn_type="http", host="example.com"))
    message = str(err.value)
    assert "'crm_api'" in message and "'http'" in message
    assert "pip install apache-airflow-providers-http" in message
    assert "Unknown hook type" not in message
    with pytest.raises(DbStreamInputError, match="pip install apache-airflow-providers-microsoft-mssql"):
        sql_source_hook(connection("erp", conn_type="mssql", host="db"))


def test_a_registered_hook_that_cannot_be_imported_names_its_package(connection, tmp_path, monkeypatch):
    from airflow.sdk.definitions.connection import Connection

    def missing_driver(self, **kwargs):
        raise ImportError("No module named 'somedriver'")

    monkeypatch.setattr(Connection, "get_hook", missing_driver)
    with pytest.raises(DbStreamInputError) as err:
        sql_source_hook(connection("legacy", conn_type="sqlite", host=str(tmp_path / "x.db")))
    message = str(err.value)
    assert "'legacy'" in message and "apache-airflow-providers-sqlite" in message
    assert "No module named 'somedriver'" in message


def test_what_the_provider_manager_knows_and_the_package_names():
    assert registered_hook("postgres") == "apache-airflow-providers-postgres"
    assert registered_hook("no_such_type") is False
    assert provider_package("http") == "apache-airflow-providers-http"
    assert provider_package("google_cloud_platform") == "apache-airflow-providers-google"
    assert provider_package("my_db") == "apache-airflow-providers-my-db"
