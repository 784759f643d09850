"""Every DAG in dags/ parses and runs green under Airflow; a cleared failed task emits the missing rows.

Airflow runs the DAGs itself (dag.test, `airflow dags test`, `airflow tasks clear`) in subprocesses
with a throwaway AIRFLOW_HOME, connections from AIRFLOW_CONN_* variables, a Postgres database of
its own and a redis-server of its own (the DAGs write fixed stream names such as `customers`, so
clones of the project running these tests at once must not share a Redis database).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = PROJECT_ROOT / "dags"
EXPECTED_DAGS = {"customers_to_stream", "customers_continuous", "stream_orders", "stream_invoices"}
RECONCILE_DAGS = {"customers_reconcile"}  # no stream Params: it sends only tombstones
# Read the stream, write none: through a watcher's trigger or a sensor, or scheduled on the stream's Asset.
ACKING_CONSUMER_DAGS = {"customers_consumer", "customers_wait_for_changes"}  # end with the ack task
CONSUMER_DAGS = ACKING_CONSUMER_DAGS | {"customers_changed"}
# Run DAGs by id from a dags folder, as the scheduler would, with no retry delays.
RUN_DAGS = """
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
bag = DagBag({dags!r})
assert not bag.import_errors, bag.import_errors
for dag_id in {dag_ids!r}:
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
        if getattr(task, "run_for", None) is not None:
            task.run_for = pendulum.duration(seconds=3)
            task.poll_interval = pendulum.duration(seconds=0.5)
    run = dag.test(logical_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).one()
        print("RESULT", json.dumps({{"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state),
              "try_number": ti.try_number, "xcom": ti.xcom_pull(task_ids=ti.task_id)}}, default=str))
"""
# What the scheduler does with a task cleared in the UI: the same TI of the same run, next try.
RERUN_CLEARED = """
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.sdk.definitions.dag import _run_task
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
dag = DagBag({dags!r}).dags[{dag_id!r}]
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id={run_id!r}).one()
    assert ti.state is None, ti.state  # cleared
    ti.state = TaskInstanceState.SCHEDULED
    ti.try_number += 1
    session.commit()
    _run_task(ti=ti, task=dag.get_task(ti.task_id))
    session.expire_all()
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id={run_id!r}).one()
    print("RESULT", json.dumps({{"dag_id": dag.dag_id, "run_id": ti.run_id, "state": str(ti.state),
          "try_number": ti.try_number}}))
"""


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    """A redis-server on a free loopback port, stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(port),
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield client, port
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, own_redis):
    name = f"dbstream_ops_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    dsn = f"host=127.0.0.1 user=postgres dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute((DAGS / "sql/seed_customers.sql").read_text())
        db.execute((DAGS / "sql/seed_orders.sql").read_text())
    target, port = own_redis
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CRM_DB": json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": name}
        ),
        "AIRFLOW_CONN_REDIS_DEFAULT": json.dumps(
            {"conn_type": "redis", "host": "127.0.0.1", "port": port, "extra": {"db": 0}}
        ),
    }
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    yield env, target, dsn
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def _python(env, code: str) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    results = [json.loads(line[7:]) for line in output.splitlines() if line.startswith("RESULT ")]
    return results, output


def _airflow(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_every_dag_parses_with_its_params_and_schedule(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.conftest import set_connection

    set_connection(monkeypatch, "redis_default", {"conn_type": "redis", "host": "redis", "port": 6379})
    bag = DagBag(str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED_DAGS | RECONCILE_DAGS | CONSUMER_DAGS
    [stream] = bag.dags["customers_changed"].timetable.asset_condition.objects
    assert stream.uri == "redis://redis:6379/0/customers"  # the Asset the operators emit for `customers`
    continuous = bag.dags["customers_continuous"]
    assert continuous.timetable.__class__.__name__ == "ContinuousTimetable"
    assert continuous.max_active_runs == 1
    assert (
        continuous.tasks[0].run_for.total_seconds() > 0 and continuous.tasks[0].poll_interval.total_seconds()
    )
    for dag_id in EXPECTED_DAGS:
        assert {"action", "replay_from", "replay_to", "confirm_reset", "start_from"} <= set(
            bag.dags[dag_id].params
        ), dag_id
    invoices = bag.dags["stream_invoices"].tasks[0].spec
    assert invoices.pkey_columns == ("order_id", "line") and invoices.lookback.total_seconds() == 1800
    # the consumers: one scheduled on the stream's Asset through its watcher's trigger, one waiting
    # deferred in a sensor; both end with the task that acks what they were given
    consumer = bag.dags["customers_consumer"]
    (asset,) = consumer.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert watcher.trigger.serialize()[1] == {
        "stream": "customers", "group": "crm_view", "consumer": "airflow-crm-view",
        "redis_conn_id": "redis_default", "count": 500, "max_bytes": 1_000_000, "min_idle": 600.0,
        "block": 5.0, "start_id": "0", "fields": True,
    }  # fmt: skip
    for dag_id in ACKING_CONSUMER_DAGS:
        (last,) = bag.dags[dag_id].leaves
        assert type(last).__name__ == "RedisStreamAckOperator", dag_id


def test_every_dag_runs_green(airflow_env):
    env, target, _ = airflow_env
    ids = ["customers_continuous", "customers_to_stream", "stream_invoices"]
    results, output = _python(env, RUN_DAGS.format(dags=str(DAGS), dag_ids=ids))
    assert [r["dag_id"] for r in results] == ids, output[-4000:]
    assert all(r["state"] == "success" for r in results), output[-4000:]
    continuous, interval, invoices = results
    assert continuous["xcom"]["cycles"] >= 2 and continuous["xcom"]["emitted_total"] == 1000, continuous
    assert interval["xcom"]["emitted"] == 0 and interval["xcom"]["duplicates"] == 1000  # same stream
    assert invoices["xcom"]["emitted"] == 600
    assert target.xlen("customers") == 1000 and target.xlen("invoices") == 600
    assert json.loads(target.xrange("invoices", count=1)[0][1]["pkey"]) == [1, 1]

    # The last one through Airflow's own CLI, as a user would test a DAG.
    proc = _airflow(env, "dags", "test", "stream_orders", "2026-01-01")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "emitted=300" in proc.stdout + proc.stderr
    assert target.xlen("orders") == 300


FLAKY_YAML = """
sources:
  - name: flaky
    sql_conn_id: crm_db
    sql: SELECT id, name, updated_at FROM flaky WHERE updated_at >= %(window_start)s ORDER BY updated_at
    stream: flaky
    pkey_column: id
    epoch_column: updated_at
    lookback: 15m
    variant: flaky.v1
    batch_size: 100
    # One pass, as a window reads: the chunked first load checks for NULL keys before it sends anything.
    snapshot_chunk_size: null
    retries: 0
"""


def test_a_cleared_failed_task_rerun_emits_exactly_the_missing_rows(airflow_env, tmp_path: Path):
    env, target, dsn = airflow_env
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "streams.yaml").write_text(FLAKY_YAML)
    (dags / "flaky_dag.py").write_text((DAGS / "streams_from_yaml.py").read_text())
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE TABLE flaky (id bigint, name text, updated_at timestamptz NOT NULL)")
        db.execute(
            "INSERT INTO flaky SELECT g, 'row ' || g, now() - interval '1 hour' + g * interval '1 second' "
            "FROM generate_series(1, 1000) g"
        )
        # A NULL key in the 6th batch: five batches reach the stream, then the cycle fails.
        db.execute(
            "INSERT INTO flaky VALUES (NULL, 'broken', now() - interval '1 hour' + interval '550.5 s')"
        )

    results, output = _python(env, RUN_DAGS.format(dags=str(dags), dag_ids=["stream_flaky"]))
    assert results and results[0]["state"] == "failed", output[-4000:]
    assert "NULL" in output and "flaky" in output  # the error names the problem and the stream
    assert target.xlen("flaky") == 500
    assert target.hget("{flaky}:state", "watermark") is None  # a failed cycle moves no watermark

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("UPDATE flaky SET id = 1001 WHERE id IS NULL")
    cleared = _airflow(env, "tasks", "clear", "-y", "stream_flaky", "--only-failed",
                       "--start-date", "2026-01-01", "--end-date", "2026-01-01")  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr[-3000:]
    rerun, output = _python(env, RERUN_CLEARED.format(dags=str(dags), dag_id="stream_flaky",
                                                      run_id=results[0]["run_id"]))  # fmt: skip
    assert rerun and rerun[0]["state"] == "success", output[-4000:]
    assert rerun[0]["run_id"] == results[0]["run_id"] and rerun[0]["try_number"] > results[0]["try_number"]
    assert "emitted=501 duplicates=500" in output
    pkeys = [fields["pkey"] for _id, fields in target.xrange("flaky")]
    assert sorted(map(int, pkeys)) == list(range(1, 1002))  # every row exactly once


def test_the_reconcile_dag_tombstones_the_deleted_customers(airflow_env):
    env, target, dsn = airflow_env
    results, output = _python(env, RUN_DAGS.format(dags=str(DAGS), dag_ids=["customers_to_stream"]))
    assert results and results[0]["state"] == "success", output[-4000:]
    assert target.zcard("{customers}:keys") == 1000  # track_keys=True in the streaming DAGs
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DELETE FROM customers WHERE id IN (7, 8)")
    # The seeded rows are minutes old, inside lookback; make 7, 8 and 9 look last seen a day ago.
    day_ago_us = (int(target.time()[0]) - 86_400) * 1_000_000
    target.zadd("{customers}:keys", dict.fromkeys(["7", "8", "9"], day_ago_us), xx=True)

    results, output = _python(env, RUN_DAGS.format(dags=str(DAGS), dag_ids=["customers_reconcile"]))
    assert results and results[0]["state"] == "success", output[-4000:]
    assert results[0]["xcom"]["deleted"] == 2 and results[0]["xcom"]["keys_scanned"] == 998
    tombstones = [f for _, f in target.xrange("customers") if f.get("op") == "delete"]
    assert sorted(f["pkey"] for f in tombstones) == ["7", "8"]
    assert "Reconcile of stream customers: keys_scanned=998 deleted=2" in output


# The sensor DAG through dag.test, which runs a deferred task's trigger in-process (Airflow 3.3).
RUN_SENSOR_DAG = """
import json
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
dag = DagBag({dags!r}).dags["customers_wait_for_changes"]
run = dag.test(logical_date=pendulum.datetime(2026, 1, 2, tz="UTC"))
with create_session() as session:
    tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run.run_id).all()
    print("RESULT", json.dumps({{"state": str(run.state),
          "xcom": {{ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in tis}}}}, default=str))
"""


def test_the_sensor_dag_waits_deferred_then_acks_what_it_was_given(airflow_env):
    env, target, _ = airflow_env
    target.xadd("customers", {"pkey": "5000", "epoch": "1", "payload": "{}", "variant": "customer.v1"})
    target.xadd("customers", {"pkey": "5000", "epoch": "2", "op": "delete", "payload": "null",
                              "variant": "customer.v1"})  # fmt: skip
    first = target.xrange("customers", count=500)  # the group reads from the start, 500 per event
    ids = [i for i, _ in first]
    deletes = sum(1 for _, fields in first if fields.get("op") == "delete")
    results, output = _python(env, RUN_SENSOR_DAG.format(dags=str(DAGS)))
    assert results and results[0]["state"] == "success", output[-4000:]
    xcom = results[0]["xcom"]
    assert xcom["wait_for_customers"]["ids"] == ids
    assert xcom["wait_for_customers"]["consumer"] == "customers_wait_for_changes.wait_for_customers"
    assert xcom["audit"] == {"messages": len(ids), "deletes": deletes}
    assert xcom["ack"] == {"acked": len(ids), "ids": len(ids), "events": 1}
    assert target.xpending("customers", "crm_audit")["pending"] == 0
    assert "running trigger in line" in output  # the sensor really deferred
