"""One streaming DAG per source listed in streams.yaml (here: orders and invoice lines of crm_db).

Add a table by adding an entry to the YAML file; a mistake there shows as this file's import error
in the UI, naming the source and the key.
"""

from __future__ import annotations

from pathlib import Path

from airflow_dbstream.factory import dags_from_yaml

globals().update(dags_from_yaml(Path(__file__).with_name("streams.yaml")))
