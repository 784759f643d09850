"""airflow-dbstream: stream changed rows of legacy SQL databases into Redis Streams."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe the provider to Airflow's provider discovery; plain data, no imports, no I/O."""
    return {
        "package-name": "airflow-dbstream",
        "name": "DB Stream",
        "description": "Polls legacy SQL databases through Airflow SQL connections and appends each "
        "new or changed row to a Redis Stream, deduplicated by an atomic Lua script.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "DB Stream",
                "external-doc-url": "https://pypi.org/project/airflow-dbstream/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "DB Stream",
                "python-modules": [
                    "airflow_dbstream.operators.sql_to_redis_stream",
                    "airflow_dbstream.operators.reconcile_deletes",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "DB Stream",
                "python-modules": ["airflow_dbstream.hooks.redis_stream"],
            }
        ],
    }
