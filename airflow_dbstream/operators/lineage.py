"""OpenLineage: the tables the cycle's SQL reads (found by common-sql's helpers) and the stream it writes.

The stream is named the way a redis-py URL names a database: namespace ``redis://host:port/db``,
name = the stream key, as its Asset URI ``redis://host:port/db/<key>`` (core/assets.py) names it.
Without the openlineage provider installed, nothing is reported.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.hooks.sql_source import sql_source_hook
from airflow_dbstream.operators.assets import connection_address

_PYFORMAT = re.compile(r"%\((\w+)\)s")


def parseable_sql(sql: str) -> str:
    """OpenLineage's SQL parser reads ``:name`` but not the pyformat ``%(name)s`` bind markers."""
    return _PYFORMAT.sub(r":\1", sql)


def stream_lineage(spec: StreamSpec, sql_conn_id: str, redis_conn_id: str, log: logging.Logger) -> Any:
    """An OperatorLineage: the SQL's input tables (with the SQL job facet) and the stream as output."""
    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
        from airflow.providers.openlineage.sqlparser import SQLParser
        from airflow.providers.openlineage.utils.utils import should_use_external_connection
    except ImportError:
        log.debug("OpenLineage provider not installed: no lineage for stream %s", spec.stream)
        return None
    stream = connection_address(redis_conn_id, spec.stream)  # as the stream's Asset URI names it
    output = Dataset(namespace=stream.namespace, name=stream.stream)
    hook = sql_source_hook(sql_conn_id)
    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    try:
        database_info = hook.get_openlineage_database_info(connection)
        dialect = hook.get_openlineage_database_dialect(connection)
    except AttributeError:
        database_info = None
    if database_info is None:  # a hook without OpenLineage support: the output is still known
        return OperatorLineage(outputs=[output])
    parser = SQLParser(dialect=dialect, default_schema=hook.get_openlineage_default_schema())
    sql_lineage = parser.generate_openlineage_metadata_from_sql(
        sql=parseable_sql(spec.sql),
        hook=hook,
        database_info=database_info,
        sqlalchemy_engine=None,
        use_connection=should_use_external_connection(hook),
    )
    return OperatorLineage(
        inputs=sql_lineage.inputs,
        outputs=[output],
        run_facets=sql_lineage.run_facets,
        job_facets=sql_lineage.job_facets,
    )
