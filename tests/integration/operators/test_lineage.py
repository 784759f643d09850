"""OpenLineage facets of a cycle, with the openlineage provider installed: SQL inputs, the stream output."""

from __future__ import annotations

import pytest

from tests.integration.conftest import make_operator, run_cycle

pytestmark = pytest.mark.integration


def test_inputs_are_the_tables_the_sql_reads_and_the_output_is_the_stream(pg_table, stream):
    from airflow.providers.openlineage.extractors import OperatorLineage

    run_cycle(pg_table, stream)
    lineage = make_operator(pg_table, stream).get_openlineage_facets_on_complete(None)
    assert isinstance(lineage, OperatorLineage)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("postgres://127.0.0.1:5432", f"test.public.{pg_table.name}")
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("redis://127.0.0.1:6379/0", stream)]
    assert "window_start" in lineage.job_facets["sql"].query
    schema = lineage.inputs[0].facets["schema"]
    assert [f.name for f in schema.fields] == ["id", "name", "updated_at"]


def test_extractor_manager_uses_the_operator_method(pg_table, stream):
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    operator = make_operator(pg_table, stream, redis_conn_id="redis_test")
    extractor = ExtractorManager().get_extractor_class(operator)
    assert extractor is not None and extractor.__name__ == "DefaultExtractor"
    metadata = extractor(operator).extract_on_complete(None)
    assert [d.name for d in metadata.outputs] == [stream]
    assert [d.name for d in metadata.inputs] == [f"test.public.{pg_table.name}"]


def test_a_source_without_openlineage_support_still_reports_the_stream(tmp_path, stream, monkeypatch):
    from tests.integration.conftest import SqliteTable

    table = SqliteTable(monkeypatch, tmp_path)
    lineage = make_operator(table, stream).get_openlineage_facets_on_complete(None)
    assert [d.name for d in lineage.outputs] == [stream]
    table.close()
