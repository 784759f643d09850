"""The demo stack's files, checked without Docker: the compose file, its connections, its seed and writer.

Docker cannot run here, so Debian's docker-compose validates the file (`config`), and the seed SQL
and the writer service's program run against this machine's Postgres.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.system.soak import DEPLOYMENT, WORKERS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKER_SERVICES = {"airflow-worker-1", "airflow-worker-2"}
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"} | WORKER_SERVICES  # fmt: skip
# What Airflow reads at the top level of a JSON connection; anything else is silently not a connection.
CONN_KEYS = {"conn_type", "host", "login", "password", "schema", "port", "extra", "description"}


@pytest.fixture(scope="module")
def compose() -> dict:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, (
        "docker-compose is missing: scripts/setup.sh installs it (apt-get install docker-compose)"
    )
    check = subprocess.run([docker_compose, "-f", "docker-compose.yaml", "config", "-q"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    resolved = subprocess.run([docker_compose, "-f", "docker-compose.yaml", "config"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, check=True)  # fmt: skip
    return yaml.safe_load(resolved.stdout)


def test_services_of_the_stack(compose):
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"airflow-db", "source-db", "redis", "rabbitmq", "demo-writer"} <= set(services)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"]["context"] == str(PROJECT_ROOT)  # the provider from this checkout
        env = service["environment"]
        assert "@airflow-db:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]  # its own metadata database
        # What the soak proves under faults is what this stack runs: the same executor and settings.
        assert {key: env.get(key) for key in DEPLOYMENT} == DEPLOYMENT, name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("amqp://")
            and "@rabbitmq:5672" in (env["AIRFLOW__CELERY__BROKER_URL"])
        )  # RabbitMQ, as in the soak; Redis serves only as the target
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert "@airflow-db:" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert len(WORKER_SERVICES) == WORKERS
    for name in WORKER_SERVICES:
        assert services[name]["command"] == ["celery", "worker"]
        assert services[name]["environment"]["DUMB_INIT_SETSID"] == "0"
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"] != "guest"  # guest: localhost only
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES - WORKER_SERVICES}
    assert commands["airflow-apiserver"] == ["api-server"] and commands["airflow-init"] == ["db", "migrate"]
    assert services["airflow-apiserver"]["ports"][0]["published"] in (8080, "8080")
    assert services["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] == (
        "service_completed_successfully"
    )
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG AIRFLOW_VERSION=3\.3\.\d+", dockerfile) and "FROM apache/airflow:" in dockerfile
    assert '"/opt/dbstream[postgres' in dockerfile and ",celery]" in dockerfile  # the workers' provider


def test_connections_preset_by_environment_are_read_by_airflow(compose, monkeypatch):
    from airflow.sdk import BaseHook

    env = compose["services"]["airflow-scheduler"]["environment"]
    for conn_id in ("crm_db", "redis_default"):
        spec = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        assert set(spec) <= CONN_KEYS, spec
        monkeypatch.setenv(f"AIRFLOW_CONN_COMPOSE_{conn_id.upper()}", env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    crm = BaseHook.get_connection("compose_crm_db")
    assert (crm.conn_type, crm.host, crm.port) == ("postgres", "source-db", 5432)
    assert (crm.schema, crm.login, crm.password) == ("crm", "crm", "crm")
    target = BaseHook.get_connection("compose_redis_default")
    assert (target.conn_type, target.host, target.extra_dejson["db"]) == ("redis", "redis", 0)
    source = compose["services"]["source-db"]["environment"]
    assert (source["POSTGRES_USER"], source["POSTGRES_DB"]) == ("crm", "crm")


def test_seed_sql_and_the_writer_service_run_on_postgres(compose):
    volumes = compose["services"]["source-db"]["volumes"]
    seeds = [v.split(":")[0] if isinstance(v, str) else v["source"] for v in volumes]
    assert [s.rsplit("/", 1)[1] for s in seeds] == ["seed_customers.sql", "seed_orders.sql"]
    writer = compose["services"]["demo-writer"]
    assert writer["entrypoint"][-1].endswith("scripts/demo_writer.py")
    name = f"dbstream_ops_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        dsn = f"host=127.0.0.1 user=postgres dbname={name}"
        with psycopg.connect(dsn, autocommit=True) as db:
            for seed in seeds:  # what the postgres image runs from docker-entrypoint-initdb.d
                db.execute(Path(seed).read_text())
            assert db.execute("SELECT count(*) FROM customers").fetchone()[0] == 1000
            assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 300
            assert db.execute("SELECT count(*) FROM invoice_lines").fetchone()[0] == 600
            before = db.execute("SELECT max(updated_at) FROM customers").fetchone()[0]
        args = list(writer["command"])
        args[args.index("--dsn") + 1] = dsn  # the service's own command, pointed at this machine
        args[args.index("--interval") + 1] = "0.05"
        program = str(PROJECT_ROOT / "scripts/demo_writer.py")
        command = [sys.executable, program, *args, "--rounds", "3"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("writer: round") == 3
        with psycopg.connect(dsn) as db:
            assert (
                db.execute("SELECT count(*) FROM customers WHERE updated_at > %s", (before,)).fetchone()[0]
                >= 3
            )
            assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 303
            assert db.execute("SELECT count(*) FROM invoice_lines").fetchone()[0] == 606
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
