"""dags/customers_consumer.py under a real Airflow: api-server, scheduler, dag-processor and triggerer.

The four components run from a throwaway AIRFLOW_HOME with a Postgres metadata database of their own
and a redis-server of the test's own (the DAG reads the fixed stream `customers`). An XADD to the
stream makes the watcher's trigger fire in the triggerer, the scheduler starts a run of
customers_consumer, LocalExecutor runs its tasks, and the ack task acks: the group's pending list
is empty and the view holds the rows. The triggerer is then stopped and started again (a real
restart) while messages arrive: they make one more run, and nothing acked before is fired again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.redis_servers import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STREAM, GROUP, DAG_ID = "customers", "crm_view", "customers_consumer"


class Airflow:
    """The components as subprocesses, each logging to a file of its own; all stopped by stop()."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process writes it until stopped
        args = [sys.executable, "-m", "airflow", name]
        self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the component and the workers it forked
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.home.glob("*.log"))
        )


@pytest.fixture
def airflow(tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    db_name = f"dbstream_trig_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f"CREATE DATABASE {db_name}")
    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dags" / "customers_consumer.py", dags)
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db_name}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_REDIS_DEFAULT": json.dumps(redis_server.connection()),
    }
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    cluster = Airflow(home, env)
    try:
        for name in COMPONENTS:
            cluster.start(name)
        yield (
            cluster,
            redis_server.admin(decode_responses=True),
            f"host=127.0.0.1 user=postgres dbname={db_name}",
        )
    finally:
        cluster.stop_all()
        redis_server.stop()
        admin.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        admin.close()


def wait_for(what: str, check, cluster: Airflow, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")


def runs(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as db:
        return db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = %s ORDER BY id", (DAG_ID,)
        ).fetchall()


def add(client, *rows: tuple[int, int, str]) -> list[str]:
    """XADD dbstream-shaped messages in one MULTI, so the trigger sees them at once."""
    pipe = client.pipeline(transaction=True)
    for pkey, epoch, name in rows:
        payload = json.dumps({"id": pkey, "name": name})
        pipe.xadd(STREAM, {"payload": payload, "variant": "customer.v1", "epoch": epoch, "pkey": pkey})
    return pipe.execute()


def fired_ids(dsn: str) -> list[list[str]]:
    """The ids each asset event carried, from the trigger's payload Airflow stored in the event's extra."""
    with psycopg.connect(dsn) as db:
        extras = [e for (e,) in db.execute("SELECT extra FROM asset_event ORDER BY id").fetchall()]
    return [e["payload"]["ids"] for e in extras]


def group_created(client) -> bool:
    try:
        return any(g["name"] == GROUP for g in client.xinfo_groups(STREAM))
    except Exception:  # the stream does not exist until the trigger makes its group (MKSTREAM)
        return False


def test_an_xadd_runs_the_consumer_dag_whose_last_task_acks(airflow):
    cluster, client, dsn = airflow
    wait_for("the watcher's trigger to create its group", lambda: group_created(client), cluster)
    first = add(client, (1, 1_001, "c1"), (2, 1_002, "c2"), (3, 1_003, "c3"))

    def settled(n_ids: int) -> bool:
        """Every fired id's run finished and nothing is pending."""
        r = runs(dsn)
        return (
            sum(map(len, fired_ids(dsn))) >= n_ids
            and bool(r)
            and all(state in ("success", "failed") for _, state in r)
            and client.xpending(STREAM, GROUP)["pending"] == 0
        )

    wait_for("the first messages' run to finish and ack", lambda: settled(3), cluster)
    assert fired_ids(dsn) == [first]  # one event for one MULTI, hence one run
    assert [state for _, state in runs(dsn)] == ["success"], cluster.logs()
    assert sorted(client.hkeys("customers:view")) == ["1", "2", "3"]

    # a real restart of the triggerer, with messages arriving while it is down
    cluster.stop("triggerer")
    later = add(client, (2, 2_000, "c2 renamed"), (4, 2_000, "c4"))
    cluster.start("triggerer")
    wait_for("the later messages' run to finish and ack", lambda: settled(5), cluster)
    time.sleep(5)  # time for a double fire to show up as another event and run
    assert fired_ids(dsn) == [first, later]  # nothing acked before the restart fired again
    assert [state for _, state in runs(dsn)] == ["success", "success"], cluster.logs()
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    assert json.loads(client.hget("customers:view", "2"))["name"] == "c2 renamed"
    assert sorted(client.hkeys("customers:view")) == ["1", "2", "3", "4"]
