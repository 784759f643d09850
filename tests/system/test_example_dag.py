"""The example DAG, run by Airflow itself (dag.test) with connections from AIRFLOW_CONN_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
import redis

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import REDIS_HOST, REDIS_PORT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Unique per run: several clones of the project may run this test on one server at once. The
# example's stream name is fixed, so the Redis db is overridable for the same reason.
DAG_DB = f"dbstream_dagtest_{uuid.uuid4().hex[:10]}"
REDIS_DB = int(os.environ.get("DBSTREAM_TEST_DAG_REDIS_DB", "9"))
RUN_DAG = """
import sys
import pendulum
sys.path.insert(0, {dags!r})
from customers_to_stream import dag
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
for task in dag.tasks:
    task.retries = 0
run = dag.test(logical_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run.run_id).one()
    print("RESULT", run.run_id, run.state, ti.try_number)
"""
# What the scheduler does with a task cleared in the UI: the same TI of the same run, next try.
RERUN_CLEARED = """
import sys
sys.path.insert(0, {dags!r})
from customers_to_stream import dag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.sdk.definitions.dag import _run_task
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id={run_id!r}).one()
    assert ti.state is None, ti.state  # cleared
    ti.state = TaskInstanceState.SCHEDULED
    ti.try_number += 1  # as the scheduler does when it schedules a cleared task
    session.commit()
    _run_task(ti=ti, task=dag.get_task(ti.task_id))
    session.expire_all()
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id={run_id!r}).one()
    print("RESULT", ti.run_id, ti.state, ti.try_number)
"""


@pytest.fixture
def airflow_env(tmp_path):
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {DAG_DB}")
    admin.execute(f"CREATE DATABASE {DAG_DB}")
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DAG_DB}", autocommit=True) as db:
        db.execute((PROJECT_ROOT / "dags/sql/seed_customers.sql").read_text())
    target = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    target.flushdb()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CRM_DB": json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": DAG_DB,
            }
        ),
        "AIRFLOW_CONN_REDIS_DEFAULT": json.dumps(
            {"conn_type": "redis", "host": REDIS_HOST, "port": REDIS_PORT, "extra": {"db": REDIS_DB}}
        ),
    }
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )
    yield env, target, f"host=127.0.0.1 user=postgres dbname={DAG_DB}"
    target.flushdb()
    admin.execute(f"DROP DATABASE IF EXISTS {DAG_DB} WITH (FORCE)")
    admin.close()


def _run_dag(env, code: str = RUN_DAG, run_id: str = "") -> tuple[str, str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", code.format(dags=str(PROJECT_ROOT / "dags"), run_id=run_id)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    result = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert result, output[-4000:]
    _, run_id, state, try_number = result[-1].split()
    return run_id, state, int(try_number), output


def test_example_dag_runs_green_and_a_cleared_rerun_emits_nothing_new(airflow_env):
    env, target, dsn = airflow_env
    run_id, state, try_number, output = _run_dag(env)
    assert state == "success", output[-4000:]
    assert target.xlen("customers") == 1000
    assert "emitted=1000" in output

    cleared = subprocess.run(
        [sys.executable, "-m", "airflow", "tasks", "clear", "-y", "customers_to_stream",
         "--start-date", "2026-01-01", "--end-date", "2026-01-01"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr[-2000:]
    rerun_id, state, rerun_try, output = _run_dag(env, RERUN_CLEARED, run_id)
    assert state == "success", output[-4000:]
    assert rerun_id == run_id and rerun_try > try_number  # the same DAG run, retried
    assert target.xlen("customers") == 1000
    assert "emitted=0 duplicates=1000" in output

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("UPDATE customers SET tier = 'gold', updated_at = clock_timestamp() WHERE id <= 5")
    _, state, _, output = _run_dag(env)
    assert state == "success"
    assert target.xlen("customers") == 1005


DEMO_REDIS_DB = int(os.environ.get("DBSTREAM_TEST_DEMO_REDIS_DB", "12"))


@pytest.fixture
def demo_env():
    """scripts/demo.py on a Postgres database and a Redis db of its own (its stream name is fixed)."""
    database = f"dbstream_demo_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"CREATE DATABASE {database}")
    target = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=DEMO_REDIS_DB)
    keys = ("customers", *(f"{{customers}}:{kind}" for kind in ("seen", "digest", "state", "lock", "keys")))
    target.delete(*keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "DEMO_"))}
    yield {**env, "DEMO_PG_DB": database, "DEMO_REDIS_DB": str(DEMO_REDIS_DB)}, target
    target.delete(*keys)
    admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.close()


def test_the_demo_prints_its_own_lines_without_airflow_noise_or_negative_durations(demo_env):
    env, target = demo_env
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts/demo.py")],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, (out[-3000:], proc.stderr[-3000:])
    lines = out.splitlines()
    noise = [line for line in lines + proc.stderr.splitlines()
             if "[info" in line or "[DAG TEST]" in line or "DagRun Finished" in line]  # fmt: skip
    assert noise == [], noise[:5]
    assert "duration=-" not in out + proc.stderr
    assert len(lines) < 50, out
    runs = [line for line in lines if line.startswith("cycle ")]
    assert len(runs) == 3 and all(" success in " in line for line in runs), runs
    assert all(float(line.rsplit(" in ", 1)[1].removesuffix(" s")) >= 0 for line in runs), runs
    cycles = [line.strip() for line in lines if line.strip().startswith("Cycle of stream customers:")]
    assert len(cycles) == 3 and "emitted=1000 duplicates=0" in cycles[0], cycles
    assert all(float(line.split("duration_seconds=")[1].split()[0]) >= 0 for line in cycles)
    assert "-" not in "".join(line.split("lag_seconds=")[1].split()[0] for line in cycles)
    assert "3 cycles: rows_read=" in out and f"the newest 5 of {target.xlen('customers')} messages" in out
    assert "freshness:" in out and "stream length:  " in out
