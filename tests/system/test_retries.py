"""Retries for real: Airflow's own loop (dag.test, which re-runs a task in up_for_retry once its
retry_delay has passed) runs tasks with retries=3. Bad input takes one try and fails; a source
connection killed in the middle of the cycle's query fails that try, and Airflow's retry succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import psycopg
import pytest

from tests.integration.conftest import PG_CONN, PG_DSN, REDIS_CONN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = """
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

SQL = "SELECT id, name, updated_at FROM {table} WHERE updated_at >= %(window_start)s AND {kill}()"
ARGS = dict(sql_conn_id="pg_retry", redis_conn_id="redis_retry", epoch_column="updated_at",
            lookback=timedelta(minutes=5), variant="v1", retries=3, retry_delay=timedelta(seconds=1))

def dag(dag_id, **arguments):
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as d:
        SqlToRedisStreamOperator(task_id="cycle", **{{**ARGS, **arguments}})
    return d

bad_input = dag("bad_input_{tag}", sql=SQL, stream="{stream}:bad", pkey_column="idd")  # misspelt
killed_chunked = dag("killed_chunked_{tag}", sql=SQL, stream="{stream}:chunked", pkey_column="id")
killed_window = dag("killed_window_{tag}", sql=SQL, stream="{stream}:window", pkey_column="id",
                    snapshot_chunk_size=None)
"""
RUN = """
import sys
sys.path.insert(0, {dags!r})
import retry_dags
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
dag = getattr(retry_dags, {name!r})
run = dag.test()
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run.run_id).one()
    print("RESULT", run.state, ti.state, ti.try_number)
"""


@pytest.fixture
def retry_env(tmp_path, redis_client):
    """A temporary AIRFLOW_HOME whose dags folder holds the three DAGs, a table of 3 rows, and a
    function in the DAGs' SQL that terminates its own backend the first time it runs (per DAG: a
    sequence is not rolled back with the killed transaction)."""
    tag = uuid.uuid4().hex[:10]
    table, kill, stream = f"retry_{tag}", f"kill_once_{tag}", f"test:retry:{tag}"
    db = psycopg.connect(PG_DSN, autocommit=True)
    db.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, updated_at timestamptz NOT NULL)")
    db.execute(f"INSERT INTO {table} SELECT i, 'n' || i, clock_timestamp() - interval '1 minute' "
               "FROM generate_series(1, 3) i")  # fmt: skip
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "retry_dags.py").write_text(DAGS.format(table=table, kill=kill, stream=stream, tag=tag))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_PG_RETRY=json.dumps(PG_CONN),
        AIRFLOW_CONN_REDIS_RETRY=json.dumps(REDIS_CONN),
    )
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )

    def kill_once(dag: str) -> None:
        """The next run of ``dag``'s SQL loses its connection on the first call of the function."""
        db.execute(f"DROP SEQUENCE IF EXISTS {kill}_calls; CREATE SEQUENCE {kill}_calls")
        db.execute(textwrap.dedent(f"""
            CREATE OR REPLACE FUNCTION {kill}() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('{kill}_calls') = 1 THEN
                    PERFORM pg_terminate_backend(pg_backend_pid());
                END IF;
                RETURN true;
            END $$"""))  # fmt: skip

    def run(name: str) -> tuple[str, str, int, str]:
        proc = subprocess.run(
            [sys.executable, "-c", RUN.format(dags=str(dags), name=name)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        result = [line.split() for line in output.splitlines() if line.startswith("RESULT ")]
        assert result, output[-4000:]
        _, run_state, ti_state, try_number = result[-1]
        return run_state, ti_state, int(try_number), output

    yield kill_once, run, stream
    db.execute(
        f"DROP TABLE IF EXISTS {table}; DROP FUNCTION IF EXISTS {kill}; DROP SEQUENCE IF EXISTS {kill}_calls"
    )
    db.close()
    for suffix in ("bad", "chunked", "window"):
        name = f"{stream}:{suffix}"
        tag_ = "{" + name + "}"
        redis_client.delete(name, *(f"{tag_}:{kind}" for kind in ("seen", "digest", "state", "lock", "keys")))


def test_bad_input_takes_one_try_of_four(retry_env, redis_client):
    kill_once, run, stream = retry_env
    kill_once("bad_input")  # the function exists; the misspelt pkey column fails the cycle first
    run_state, ti_state, try_number, output = run("bad_input")
    assert (run_state, ti_state, try_number) == ("failed", "failed", 1), output[-4000:]
    assert "pkey column" in output or "idd" in output
    assert redis_client.xlen(f"{stream}:bad") == 0


@pytest.mark.parametrize("dag", ["killed_window", "killed_chunked"])
def test_a_killed_source_connection_is_retried_and_the_retry_streams_every_row(retry_env, redis_client, dag):
    kill_once, run, stream = retry_env
    kill_once(dag)
    run_state, ti_state, try_number, output = run(dag)
    assert "terminating connection due to administrator command" in output, output[-4000:]
    assert (run_state, ti_state, try_number) == ("success", "success", 2), output[-4000:]
    assert redis_client.xlen(f"{stream}:{dag.removeprefix('killed_')}") == 3
