"""airflow-dbstream: stream changed rows of legacy SQL databases into Redis Streams."""

from __future__ import annotations

import copy

__version__ = "0.1.0"


# What Airflow's provider discovery reads: plain data, no imports, no I/O.
PROVIDER_INFO = {
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
                "airflow_dbstream.operators.redis_stream_ack",
            ],
        }
    ],
    "sensors": [
        {"integration-name": "DB Stream", "python-modules": ["airflow_dbstream.sensors.redis_stream"]}
    ],
    "triggers": [
        {"integration-name": "DB Stream", "python-modules": ["airflow_dbstream.triggers.redis_stream"]}
    ],
    # Airflow >= 3.2 adds the commands of these functions to its CLI: `airflow dbstream status`.
    "cli": ["airflow_dbstream.cli.get_cli_commands"],
    "hooks": [
        {
            "integration-name": "DB Stream",
            "python-modules": ["airflow_dbstream.hooks.redis_stream", "airflow_dbstream.hooks.redis_client"],
        }
    ],
    # The stream as an Airflow Asset: redis://host:port/db/<stream key> (the redis provider declares no
    # asset scheme); the normaliser checks and canonicalises every such URI (core/assets.py).
    "asset-uris": [
        {
            "schemes": ["redis", "rediss"],
            "handler": "airflow_dbstream.core.assets.sanitize_uri",
            "factory": "airflow_dbstream.operators.assets.create_asset",
            "to_openlineage_converter": "airflow_dbstream.operators.assets.convert_asset_to_openlineage",
        }
    ],
    # Its own connection type, so the redis provider's `redis` type stays as it is: the operator
    # accepts a connection of either type (both are read by RedisHook's code).
    "connection-types": [
        {
            "hook-class-name": "airflow_dbstream.hooks.redis_stream.RedisStreamHook",
            "hook-name": "Redis Stream target (DB Stream)",
            "connection-type": "dbstream_redis",
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "extra"],
                "relabeling": {"login": "ACL user", "password": "Password"},
                "placeholders": {
                    "host": "redis.example.com",
                    "port": "6379",
                    "login": "default (or an ACL user allowed EVALSHA, XADD, ZADD, HSET)",
                    "password": "the ACL user's password",
                    "db": "0",
                },
            },
            "conn-fields": {
                "db": {
                    "label": "DB",
                    "description": "Database number of the stream and its state (0 on a cluster).",
                    "schema": {"type": ["integer", "null"], "default": 0, "minimum": 0},
                },
                "cluster": {
                    "label": "Is cluster",
                    "description": "Redis Cluster: a stream's keys share one hash slot.",
                    "schema": {"type": ["boolean", "null"], "default": False},
                },
                "startup_nodes": {
                    "label": "Startup nodes",
                    "description": "Comma-separated extra host:port bootstrap nodes (cluster only).",
                    "schema": {"type": ["string", "null"]},
                },
                "ssl": {"label": "Enable TLS", "schema": {"type": ["boolean", "null"], "default": False}},
                "ssl_cert_reqs": {
                    "label": "TLS verify mode",
                    "schema": {
                        "type": ["string", "null"],
                        "default": "required",
                        "enum": ["required", "optional", "none"],
                    },
                },
                "ssl_ca_certs": {"label": "CA certificate path", "schema": {"type": ["string", "null"]}},
                "ssl_certfile": {
                    "label": "Client certificate path",
                    "schema": {"type": ["string", "null"]},
                },
                "ssl_keyfile": {"label": "Client key path", "schema": {"type": ["string", "null"]}},
                "ssl_check_hostname": {
                    "label": "Check the server's host name",
                    "schema": {"type": ["boolean", "null"], "default": False},
                },
            },
        }
    ],
}


def get_provider_info() -> dict:
    """Describe the provider to Airflow's provider discovery (a fresh copy of PROVIDER_INFO)."""
    return copy.deepcopy(PROVIDER_INFO)
