"""A DAG scheduled on a stream's Asset runs after a cycle that appended to the stream, not after a quiet
one: a real Airflow (api-server, scheduler with the LocalExecutor, dag-processor) on a Postgres metadata
database of its own, in a throwaway AIRFLOW_HOME, for as long as the test runs; stopped afterwards,
also when the test fails. The consumer is the example DAG dags/customers_changed.py; the producer
writes its `customers` stream to a redis-server of the test's own (as `redis_default`), from the
integration fixtures' source table.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import set_connection
from tests.integration.redis_servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRODUCER = """
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

with DAG(dag_id="producer", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, max_active_runs=1):
    SqlToRedisStreamOperator(task_id="cycle", sql_conn_id={conn_id!r}, redis_conn_id="redis_default",
                             sql={sql!r}, stream="customers", pkey_column="id", epoch_column="updated_at",
                             lookback=timedelta(hours=1), variant="customer.v1", retries=0)
"""


class Airflow:
    """The services of one throwaway deployment, and what the test asks its metadata database."""

    def __init__(self, home: Path, dsn: str, env: dict[str, str]) -> None:
        self.home, self.dsn, self.env = home, dsn, env
        self.services: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        self.services[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        for proc in self.services.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.services.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.home.glob("*.log")))

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.dsn) as db:
            return db.execute(sql, params).fetchall()

    def wait_for(self, what: str, check, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.services.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.logs()}"
            if check():
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        return self.query("SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s ORDER BY id", dag_id)


@pytest.fixture
def target(own_redis, monkeypatch):
    """The `redis_default` of the example DAGs: a redis-server of this test's own (fixed stream names)."""
    server = own_redis()
    set_connection(monkeypatch, "redis_default", server.connection(db=0))
    return server


@pytest.fixture
def airflow(tmp_path, pg_table, target) -> Iterator[Airflow]:
    name = f"dbstream_asset_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "producer.py").write_text(PRODUCER.format(conn_id=pg_table.conn_id, sql=pg_table.sql))
    shutil.copy(PROJECT_ROOT / "dags/customers_changed.py", dags)
    port = free_port()
    env = {
        **os.environ,  # the fixtures' AIRFLOW_CONN_PG_TEST and AIRFLOW_CONN_REDIS_DEFAULT
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,  # the same for the api-server and the workers
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }
    (tmp_path / "home").mkdir()
    deployment = Airflow(tmp_path / "home", f"host=127.0.0.1 user=postgres dbname={name}", env)
    try:
        deployment.cli("db", "migrate")
        deployment.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("scheduler", "scheduler")
        yield deployment
    finally:
        deployment.stop()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_a_dag_scheduled_on_the_stream_runs_after_a_cycle_that_emitted_and_not_after_a_quiet_one(
    airflow, pg_table, target
):
    uri = f"redis://127.0.0.1:{target.port}/0/customers"
    parsed = "SELECT dag_id FROM dag WHERE dag_id IN ('producer', 'customers_changed') AND NOT is_paused"
    airflow.wait_for("both DAGs parsed", lambda: len(airflow.query(parsed)) == 2)
    assert airflow.query("SELECT uri, name FROM asset") == [(uri, uri)]  # declared by the consumer

    now = pg_table.now()
    pg_table.insert([(i, f"c{i}", now - timedelta(seconds=i)) for i in range(1, 4)])
    airflow.cli("dags", "trigger", "producer", "--run-id", "emitting")
    airflow.wait_for(
        "the emitting cycle", lambda: ("emitting", "manual", "success") in airflow.runs("producer")
    )
    events = airflow.query(
        "SELECT e.extra, e.source_run_id, a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id"
    )
    last_id = target.admin().xinfo_stream("customers")["last-generated-id"].decode()
    assert len(events) == 1, events
    extra, source_run, event_uri = events[0]
    assert (source_run, event_uri) == ("emitting", uri)
    assert extra == {"stream": "customers", "action": "cycle", "cycles": 1, "rows_read": 3, "emitted": 3,
                     "duplicates": 0, "deletes": 0, "watermark": extra["watermark"],
                     "last_entry_id": last_id}  # fmt: skip
    consumer = lambda: airflow.runs("customers_changed")  # noqa: E731
    airflow.wait_for("the consumer's run", lambda: [r[2] for r in consumer()] == ["success"])
    [(run_id, run_type, _)] = consumer()
    assert run_type == "asset_triggered", run_id
    [(value,)] = airflow.query(
        "SELECT value FROM xcom WHERE dag_id = 'customers_changed' AND run_id = %s AND key = 'return_value'",
        run_id,
    )
    assert value == [extra]  # the example DAG read the event's figures

    airflow.cli("dags", "trigger", "producer", "--run-id", "quiet")
    airflow.wait_for("the quiet cycle", lambda: ("quiet", "manual", "success") in airflow.runs("producer"))
    time.sleep(15)  # several scheduler loops: a queued consumer run would be created by now
    assert airflow.query("SELECT count(*) FROM asset_event") == [(1,)]
    assert airflow.query("SELECT count(*) FROM asset_dag_run_queue") == [(0,)]
    assert len(consumer()) == 1
