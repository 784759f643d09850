"""Status sees the connections Airflow sees: one created in the metadata database (as the UI or
`airflow connections add` creates it, no AIRFLOW_CONN_* variable) is found by `airflow dbstream status`
and by `python -m airflow_dbstream status`, each run as a user runs it, in a temporary AIRFLOW_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import REDIS_HOST, REDIS_PORT, run_cycle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture
def airflow_home(tmp_path) -> dict[str, str]:
    """A fresh AIRFLOW_HOME, its SQLite metadata database migrated; no AIRFLOW_CONN_* in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    run([AIRFLOW, "db", "migrate"], env)
    return env


def run(command: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


STATUS_COMMANDS = {
    "airflow dbstream status": [AIRFLOW, "dbstream", "status"],
    "python -m airflow_dbstream status": [sys.executable, "-m", "airflow_dbstream", "status"],
}


def test_a_connection_of_the_metadata_database_is_seen_by_both_commands(airflow_home, pg_table, stream):
    pg_table.insert([(i, f"customer {i}", pg_table.now()) for i in range(1, 6)])
    run_cycle(pg_table, stream)  # through this process's AIRFLOW_CONN_REDIS_TEST
    conn_id = f"redis_ui_{uuid.uuid4().hex[:8]}"
    run([AIRFLOW, "connections", "add", conn_id, "--conn-type", "redis", "--conn-host", REDIS_HOST,
         "--conn-port", str(REDIS_PORT)], airflow_home)  # fmt: skip
    # The fault this replaces: outside a server context Airflow's lookup skips the metadata database.
    lookup = [sys.executable, "-c", f"from airflow.sdk import BaseHook; BaseHook.get_connection({conn_id!r})"]
    proc = run(lookup, airflow_home, check=False)
    assert proc.returncode == 1 and "AirflowNotFoundException" in proc.stderr
    for name, command in STATUS_COMMANDS.items():
        proc = run([*command, "--redis-conn-id", conn_id, "--stream", stream, "--json"], airflow_home)
        figures = json.loads(proc.stdout)
        assert (figures["stream"], figures["stream_length"], figures["seen_size"]) == (stream, 5, 5), name
        assert figures["last_cycle"]["emitted"] == 5 and figures["redis_conn_id"] == conn_id, name

        proc = run([*command, "--redis-conn-id", conn_id, "--pattern", stream], airflow_home)
        assert [line.split()[:2] for line in proc.stdout.splitlines()[1:]] == [[stream, conn_id]], name

        missing = run(
            [*command, "--redis-conn-id", "not_" + conn_id, "--stream", stream], airflow_home, False
        )
        assert missing.returncode == 2, (name, missing.stdout, missing.stderr)
        assert missing.stderr.splitlines() == [missing.stderr.strip()] and "Traceback" not in missing.stderr
        assert missing.stderr.startswith(f"status: connection 'not_{conn_id}' is not defined"), name
        assert missing.stdout == "", name
