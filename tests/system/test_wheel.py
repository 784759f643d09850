"""The wheel carries the Lua scripts and the provider entry point: install it elsewhere and run a cycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PG_CONN, REDIS_CONN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CYCLE = """
import json, uuid
from datetime import timedelta
import psycopg, redis
import airflow_dbstream, airflow_dbstream.hooks.scripts as scripts
from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator
table, stream = "wheel_" + uuid.uuid4().hex[:8], "test:wheel:" + uuid.uuid4().hex[:8]
db = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
db.execute(f"CREATE TABLE {table} AS SELECT g AS id, clock_timestamp() AS updated_at "
           "FROM generate_series(1, 10) g")
try:
    figures = SqlToRedisStreamOperator(
        task_id="t", sql_conn_id="pg", redis_conn_id="target", stream=stream, pkey_column="id",
        epoch_column="updated_at", lookback=timedelta(minutes=5), variant="wheel.v1",
        sql=f"SELECT * FROM {table} WHERE updated_at >= %(window_start)s",
    ).execute({})
finally:
    db.execute(f"DROP TABLE {table}")
    redis.Redis().delete(stream, "{" + stream + "}:seen", "{" + stream + "}:digest", "{" + stream + "}:state")
print("RESULT", json.dumps({"emitted": figures["emitted"], "module": airflow_dbstream.__file__,
      "lua": str(scripts.files("airflow_dbstream") / "lua" / "emit.lua")}))
"""


def test_wheel_installs_into_a_fresh_venv_and_runs_a_cycle(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(dist), str(PROJECT_ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = dist.glob("airflow_dbstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        "airflow_dbstream/lua/emit.lua",
        "airflow_dbstream/lua/commit.lua",
        "airflow_dbstream/lua/trim.lua",
    } <= set(names)

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python),
         f"{wheel}[postgres]"],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONN_PG": json.dumps(PG_CONN),
        "AIRFLOW_CONN_TARGET": json.dumps(REDIS_CONN),
    }
    proc = subprocess.run([str(python), "-c", CYCLE], cwd=tmp_path, env=env, capture_output=True, text=True)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcome = json.loads(result[0].removeprefix("RESULT "))
    assert outcome["emitted"] == 10
    assert str(venv) in outcome["module"] and str(PROJECT_ROOT) not in outcome["module"]
    assert outcome["lua"].startswith(str(venv))

    providers = subprocess.run(
        [str(venv / "bin" / "airflow"), "providers", "list", "--output", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert providers.returncode == 0, providers.stderr[-3000:]
    listed = {p["package_name"]: p for p in json.loads(providers.stdout[providers.stdout.index("[") :])}
    assert "airflow-dbstream" in listed
