"""A soak on a real distributed Airflow 3: CeleryExecutor with two workers, 20+ streams, faults from outside.

Run it as a command (figures printed as JSON, exit 1 when the check fails)::

    .venv/bin/python -m tests.system.soak --duration 30m

or from a test (tests/system/test_soak.py) through ``run_soak(...)``. Everything it starts lives on
127.0.0.1 and is stopped at the end, also when the check fails or the run is interrupted:

* a metadata database of its own on the machine's Postgres (``dbstream_soak_<id>``, dropped at the end),
* a RabbitMQ vhost of its own for Celery (``dbstream_soak_<id>``, deleted at the end),
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and two ``airflow celery worker``,
* three Redis servers with AOF: a standalone one and a primary with its replica (never the shared 6379),
* source tables ``soak_<id>_pg_NN`` (Postgres) and ``soak_<id>_my_NN`` (MariaDB), a login role/user of
  the soak's own for the operator (so its backends, and only they, can be killed), all dropped at the end.

The streams are the YAML DAG factory's (one generated ``soak.yaml``); hard deletes are found by a
ReconcileDeletesOperator DAG per table that hard-deletes. docs/soak.md says what is injected and checked.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import MySQLdb
import psycopg
import redis

from tests.integration.redis_servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
MY_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": "", "db": "test", "autocommit": True}
AMQP = "127.0.0.1:5672"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The Airflow settings the soak runs with that docker-compose.yaml must share (tests/system/test_compose.py
# compares them): the executor, its broker kind and result backend, the slots, the dead-task timeout.
DEPLOYMENT = {
    "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    "AIRFLOW__CORE__PARALLELISM": "8",  # 4 running on the two workers, 4 waiting in the broker
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",  # a killed worker's task fails after 30 s
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "false",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
}
WORKERS = 2

FAULT_KINDS = ("kill_worker", "kill_source", "restart_redis", "failover", "script_flush", "pause_worker")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, process group, CPU seconds of it and of its reaped children) from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = raw[raw.rindex(")") + 2 :].split()
    ppid, pgrp = int(fields_[1]), int(fields_[2])
    utime, stime, cutime, cstime = (int(x) for x in fields_[11:15])
    return ppid, pgrp, (utime + stime + cutime + cstime) / CLK_TCK


def _tree(root: int) -> dict[int, tuple[int, float]]:
    """The process and all its descendants, pid -> (depth below root, CPU seconds).

    A tree, not a process group: Airflow's task supervisor starts each task process in a session of
    its own, and a killed or paused worker must take its running tasks with it.
    """
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat:
                stats[int(entry)] = stat
    if root not in stats:
        return {}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in stats.items():
        children[ppid].append(pid)
    tree, todo = {}, [(root, 0)]
    while todo:
        pid, depth = todo.pop()
        tree[pid] = (depth, stats[pid][2])
        todo += [(child, depth + 1) for child in children[pid]]
    return tree


class Proc:
    """One long-running command in a process group of its own, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.logfile = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.cpu_dead = 0.0  # CPU of earlier incarnations (killed workers)
        self._cpu_last = 0.0

    def start(self) -> Proc:
        out = self.logfile.open("ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd="/"
        )
        out.close()
        self._cpu_last = 0.0
        return self

    @property
    def pgid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def cpu(self) -> float:
        """CPU seconds of the group now alive plus those of earlier incarnations."""
        if self.alive():
            self._cpu_last = sum(cpu for _, cpu in _tree(self.pgid).values())
        return self.cpu_dead + self._cpu_last

    def busy(self) -> bool:
        """A Celery worker runs a task when a task process hangs below a pool process (its supervisor)."""
        return self.alive() and any(depth >= 2 for depth, _ in _tree(self.pgid).values())

    def signal(self, sig: int) -> None:
        """The process, its group and every descendant (task processes run in sessions of their own)."""
        if self.popen is None:
            return
        for pid in sorted(_tree(self.pgid), reverse=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def kill(self) -> None:
        self.cpu()
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(30)
        self.cpu_dead += self._cpu_last
        self._cpu_last = 0.0

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None:
            return
        self.cpu()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        self.signal(signal.SIGKILL)  # whatever of the group is left (task processes)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


# ------------------------------------------------------------------------------------------------ sources


@dataclass
class Table:
    name: str
    kind: str  # "pg" or "my"
    redis: str  # "a" (standalone) or "pr" (primary with replica)
    hard_deletes: bool
    conn_id: str = ""

    @property
    def stream(self) -> str:
        return f"{self.name}:changes"


@dataclass
class Version:
    table: str
    pkey: str
    epoch: int | None  # None for a hard delete
    v: int
    op: str  # upsert, softdelete, harddelete
    committed: float  # wall clock after the commit returned
    began: float = 0.0  # wall clock before its statement: the previous version was visible until then


class WriterLog:
    """Every committed version, in memory and appended to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.versions: list[Version] = []
        self.file = path.open("a", encoding="utf-8")

    def add(self, version: Version) -> None:
        with self.lock:
            self.versions.append(version)
            self.file.write(json.dumps(version.__dict__) + "\n")

    def close(self) -> None:
        with self.lock:
            self.file.close()


def _us(dt: datetime) -> int:
    """Integer microseconds since the Unix epoch, as the stream's ``epoch`` field (naive = UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(microseconds=1)


class Writer(threading.Thread):
    """Inserts, updates, soft- and hard-deletes rows of one table at a steady rate; logs each commit.

    Same-second edits: a key is sometimes updated twice in a row. Held transactions: a key is updated
    in a transaction left open for ``hold`` (longer than the stream's lookback) on a second connection.
    The epoch logged is the one the stream carries: Postgres ``now()`` (the transaction's start, read back
    with RETURNING), MariaDB ``NOW(6)`` of the UPDATE (read back in the same transaction).
    """

    def __init__(self, table: Table, wlog: WriterLog, rate: float, hold: float, stop: threading.Event,
                 seed: int) -> None:  # fmt: skip
        super().__init__(name=f"writer-{table.name}", daemon=True)
        self.table, self.wlog, self.rate, self.hold, self.stop = table, wlog, rate, hold, stop
        self.rng = random.Random(seed)
        self.live: dict[str, int] = {}  # key -> last v (not soft- or hard-deleted)
        self.busy: set[str] = set()
        self.next_id = 1
        self.error: BaseException | None = None
        self.holders: list[threading.Thread] = []

    def connect(self) -> Any:
        if self.table.kind == "pg":
            return psycopg.connect(PG_ADMIN, autocommit=False)
        conn = MySQLdb.connect(**{**MY_ADMIN, "autocommit": False})
        conn.cursor().execute("SET time_zone = '+00:00'")
        return conn

    def write(self, conn: Any, op: str, key: str, v: int) -> Version:
        """One statement of ``op`` on ``key`` inside the connection's open transaction; the version."""
        t, pg = self.table.name, self.table.kind == "pg"
        began = time.time()
        cur = conn.cursor()
        ph = "%s"
        now = "now()" if pg else "NOW(6)"
        if op == "insert":
            cur.execute(
                f"INSERT INTO {t} (id, v, note, deleted, updated_at) VALUES ({ph}, {ph}, {ph}, false, {now})"
                + (" RETURNING updated_at" if pg else ""),
                (int(key), v, f"n{v}"),
            )
        elif op in ("update", "softdelete"):
            deleted = "true" if op == "softdelete" else "false"
            cur.execute(
                f"UPDATE {t} SET v = {ph}, note = {ph}, deleted = {deleted}, updated_at = {now} "
                f"WHERE id = {ph}" + (" RETURNING updated_at" if pg else ""),
                (v, f"n{v}", int(key)),
            )
        else:  # harddelete
            cur.execute(f"DELETE FROM {t} WHERE id = {ph}", (int(key),))
            return Version(t, key, None, v, "harddelete", 0.0, began)
        if not pg:
            cur.execute(f"SELECT updated_at FROM {t} WHERE id = {ph}", (int(key),))
        epoch = _us(cur.fetchone()[0])
        return Version(t, key, epoch, v, "softdelete" if op == "softdelete" else "upsert", 0.0, began)

    def commit(self, conn: Any, version: Version) -> None:
        conn.commit()
        version.committed = time.time()
        self.wlog.add(version)

    def held(self, key: str, v: int) -> None:
        try:
            conn = self.connect()
            try:
                version = self.write(conn, "update", key, v)
                time.sleep(self.hold)
                self.commit(conn, version)
            finally:
                conn.close()
            self.live[key] = v
        except BaseException as exc:
            self.error = exc
        finally:
            self.busy.discard(key)

    def run(self) -> None:
        try:
            conn = self.connect()
            while not self.stop.is_set():
                self.step(conn)
                self.stop.wait(self.rng.expovariate(self.rate))
            conn.close()
            for holder in self.holders:
                holder.join()
        except BaseException as exc:
            self.error = exc

    def seed(self, rows: int) -> None:
        """Rows that exist before the streams' first cycle: their first load reads them."""
        conn = self.connect()
        try:
            for _ in range(rows):
                self.insert(conn)
        finally:
            conn.close()

    def insert(self, conn: Any) -> None:
        key = str(self.next_id)
        self.next_id += 1
        self.commit(conn, self.write(conn, "insert", key, 1))
        self.live[key] = 1

    def step(self, conn: Any) -> None:
        free = [k for k in self.live if k not in self.busy]
        ops = ["insert", "update", "same_second", "softdelete", "held"]
        weights = [25, 45, 10, 8, 5]
        if self.table.hard_deletes:
            ops.append("harddelete")
            weights.append(7)
        op = self.rng.choices(ops, weights)[0]
        if op == "insert" or len(free) < 10:
            self.insert(conn)
            return
        key = self.rng.choice(free)
        v = self.live[key] + 1
        if op in ("softdelete", "harddelete"):  # a soft-deleted row stays, marked; neither is touched again
            self.commit(conn, self.write(conn, op, key, v))
            del self.live[key]
        elif op == "held":  # open past lookback, on a connection of its own
            self.busy.add(key)
            holder = threading.Thread(target=self.held, args=(key, v), daemon=True)
            self.holders.append(holder)
            holder.start()
        elif op == "same_second":  # two commits of one key back to back
            self.commit(conn, self.write(conn, "update", key, v))
            self.commit(conn, self.write(conn, "update", key, v + 1))
            self.live[key] = v + 1
        else:
            self.commit(conn, self.write(conn, "update", key, v))
            self.live[key] = v


class Consumer(threading.Thread):
    """A consumer reading every stream as it grows (XREAD from its last ID), following the failover.

    It is what a user's consumer sees: after a failover (or a Redis restart that lost the AOF's last
    second), entries it already read may be lost from Redis and appended again by the next cycle, with
    new, higher IDs, so it reads those versions twice.
    """

    def __init__(self, soak: Soak, stop: threading.Event) -> None:
        super().__init__(name="consumer", daemon=True)
        self.soak, self.stop = soak, stop
        self.last = {t.stream: "0-0" for t in soak.tables}
        self.read: Counter = Counter()
        self.lock = threading.Lock()
        self.clients: dict[int, redis.Redis] = {}
        self.errors = 0

    def client(self, server: RedisServer) -> redis.Redis:
        if server.port not in self.clients:
            self.clients[server.port] = server.admin(decode_responses=True, socket_timeout=3)
        return self.clients[server.port]

    def poll(self) -> None:
        for group in ("a", "pr"):
            server = self.soak.redis_a if group == "a" else self.soak.primary
            streams = {t.stream: self.last[t.stream] for t in self.soak.tables if t.redis == group}
            try:
                replies = self.client(server).xread(streams, count=2000)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                self.errors += 1  # down, restarting, loading its AOF or being promoted: read again
                continue
            with self.lock:
                for stream, entries in replies:
                    for mid, fields_ in entries:
                        v = json.loads(fields_["payload"]).get("v") if fields_["payload"] != "null" else None
                        self.read[(stream, fields_["pkey"], fields_["epoch"], v, fields_.get("op"))] += 1
                        self.last[stream] = mid

    def seen(self) -> set[tuple[Any, ...]]:
        """What it has read so far: (stream, pkey, epoch, v, op) of each message."""
        with self.lock:
            return set(self.read)

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.5)
        self.poll()

    def figures(self, streams: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        final = Counter()
        for stream, entries in streams.items():
            for m in entries:
                v = json.loads(m["payload"]).get("v") if m["payload"] != "null" else None
                final[(stream, m["pkey"], m["epoch"], v, m.get("op"))] += 1
        return {
            "consumer_read": sum(self.read.values()),
            "consumer_read_twice": sum(n - 1 for n in self.read.values() if n > 1),
            "consumer_never_read": sum(1 for k in final if k not in self.read),
            "consumer_read_but_gone": sum(1 for k in self.read if k not in final),
        }


# ------------------------------------------------------------------------------------------------ the soak


@dataclass
class Settings:
    duration: float = 120.0  # seconds of writing and faults
    tables_pg: int = 12
    tables_my: int = 8
    hard_delete_tables: int = 4  # of each kind's first ones, half on each database
    schedule: str = "15s"
    reconcile_schedule: str = "30s"
    lookback: float = 4.0
    hold: float = 7.0  # transactions held open longer than lookback
    lock_lease: float = 8.0
    rate: float = 1.0  # writes per second per table
    seed_rows: int = 100  # per table, before the first cycle (the first load runs while the writers write)
    fault_every: tuple[float, float] = (12.0, 25.0)
    faults: tuple[str, ...] = FAULT_KINDS
    drain_timeout: float = 150.0
    replica_lag: float = 20.0  # the longest the replica lags before the primary crashes (failover)
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    keep: bool = False  # keep the temporary directory (logs) after a run that passed (a failed one keeps it)


class Soak:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.id = secrets.token_hex(3)
        self.rng = random.Random(settings.seed)
        self.home = Path(tempfile.mkdtemp(prefix=f"dbstream_soak_{self.id}_"))
        self.logdir = self.home / "logs-soak"
        self.logdir.mkdir()
        self.metadb = f"dbstream_soak_{self.id}"
        self.vhost = f"dbstream_soak_{self.id}"
        self.role = f"dbsoak_{self.id}"
        self.role_password = secrets.token_hex(8)
        self.procs: dict[str, Proc] = {}
        self.redis_a = RedisServer(self.home / "redis-a", "--appendonly", "yes")
        self.redis_p = RedisServer(self.home / "redis-p", "--appendonly", "yes")
        self.redis_r = RedisServer(self.home / "redis-r", "--appendonly", "yes")
        self.primary, self.replica = self.redis_p, self.redis_r
        self.faults: list[dict[str, Any]] = []
        self.tables: list[Table] = []
        self.api_port = free_port()
        self.cleanups: list[tuple[str, Any]] = []
        self.vhost_own = False
        self.queue = f"dbstream_soak_{self.id}"
        self.torn_down = False
        self.passed = False
        atexit.register(self.teardown)  # also on an exit that skips the finally (an unhandled signal)

    # -- set-up ---------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        meta = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.metadb}"
        vhost = self.vhost if self.vhost_own else ""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update(
            AIRFLOW_HOME=str(self.home),
            PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            PYTHONPATH=str(ROOT),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=meta,
            AIRFLOW__CELERY__BROKER_URL=f"amqp://guest:guest@{AMQP}/{vhost}",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql://postgres@127.0.0.1:5432/{self.metadb}",
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=self.queue,
            AIRFLOW__CORE__DAGS_FOLDER=str(self.home / "dags"),
            AIRFLOW__CORE__FERNET_KEY="",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="true",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.api_port}/execution/",
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{self.api_port}",
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16) if not hasattr(self, "_jwt") else self._jwt,
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="60",
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="false",
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.home / "logs"),
            AIRFLOW__METRICS__STATSD_ON="false",
        )
        env.update(DEPLOYMENT)
        self._jwt = env["AIRFLOW__API_AUTH__JWT_SECRET"]
        return env

    def run_cli(self, *args: str, timeout: float = 300) -> str:
        res = subprocess.run(
            [AIRFLOW, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if res.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {res.stdout[-3000:]}{res.stderr[-3000:]}")
        return res.stdout

    def setup_broker(self) -> None:
        ctl = shutil.which("rabbitmqctl")
        if ctl:
            res = subprocess.run([ctl, "add_vhost", self.vhost], capture_output=True, text=True, timeout=60)
            if res.returncode == 0:
                self.cleanups.append(("vhost", self.vhost))
                subprocess.run([ctl, "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                               check=True, capture_output=True, timeout=60)  # fmt: skip
                self.vhost_own = True
                return
        log(f"no vhost of its own (rabbitmqctl missing or refused); the default vhost, queue {self.queue}")

    def setup_databases(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
            pg.execute(f"CREATE DATABASE {self.metadb}")
            self.cleanups.append(("metadb", self.metadb))
            pg.execute(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.role_password}'")
            self.cleanups.append(("pgrole", self.role))
            pg.execute(f"GRANT pg_read_all_stats TO {self.role}")
        my = MySQLdb.connect(**MY_ADMIN)
        cur = my.cursor()
        cur.execute(f"CREATE USER '{self.role}'@'%' IDENTIFIED BY '{self.role_password}'")
        self.cleanups.append(("myuser", self.role))
        cur.execute(f"GRANT PROCESS ON *.* TO '{self.role}'@'%'")
        my.close()
        n_hd = self.s.hard_delete_tables
        for i in range(1, self.s.tables_pg + 1):
            redis_name = "a" if i % 2 else "pr"
            self.tables.append(Table(f"soak_{self.id}_pg_{i:02d}", "pg", redis_name, i <= (n_hd + 1) // 2))
        for i in range(1, self.s.tables_my + 1):
            redis_name = "a" if i % 2 else "pr"
            self.tables.append(Table(f"soak_{self.id}_my_{i:02d}", "my", redis_name, i <= n_hd // 2))
        with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
            for t in self.tables:
                if t.kind == "pg":
                    pg.execute(f"CREATE TABLE {t.name} (id bigint PRIMARY KEY, v int NOT NULL, note text, "
                               f"deleted boolean NOT NULL, updated_at timestamptz NOT NULL)")  # fmt: skip
                    self.cleanups.append(("pgtable", t.name))
                    pg.execute(f"CREATE INDEX ON {t.name} (updated_at)")
                    pg.execute(f"GRANT SELECT ON {t.name} TO {self.role}")
        my = MySQLdb.connect(**MY_ADMIN)
        cur = my.cursor()
        for t in self.tables:
            if t.kind == "my":
                cur.execute(f"CREATE TABLE {t.name} (id bigint PRIMARY KEY, v int NOT NULL, note text, "
                            f"deleted boolean NOT NULL, updated_at datetime(6) NOT NULL, "
                            f"INDEX (updated_at)) ENGINE=InnoDB")  # fmt: skip
                self.cleanups.append(("mytable", t.name))
                cur.execute(f"GRANT SELECT ON test.{t.name} TO '{self.role}'@'%'")
        my.close()

    def redis_connection(self, server: RedisServer) -> dict[str, Any]:
        return {"conn_type": "redis", "host": "127.0.0.1", "port": server.port, "extra": {"db": 0}}

    def connections(self) -> dict[str, Any]:
        auth = {"login": self.role, "password": self.role_password, "schema": "test", "host": "127.0.0.1"}
        return {
            "soak_pg": {"conn_type": "postgres", "port": 5432, **auth},
            "soak_my": {"conn_type": "mysql", "port": 3306, **auth},
            "soak_redis_a": self.redis_connection(self.redis_a),
            "soak_redis_pr": self.redis_connection(self.primary),
        }

    def import_connections(self, only: tuple[str, ...] | None = None) -> None:
        conns = {k: v for k, v in self.connections().items() if only is None or k in only}
        path = self.home / f"connections-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(conns))
        self.run_cli("connections", "import", "--overwrite", str(path))

    def write_dags(self) -> None:
        dags = self.home / "dags"
        dags.mkdir()
        sources = []
        for t in self.tables:
            ph = "%(window_start)s"
            sources.append({
                "name": t.name,
                "sql_conn_id": "soak_pg" if t.kind == "pg" else "soak_my",
                "redis_conn_id": f"soak_redis_{t.redis}",
                "sql": f"SELECT id, v, note, deleted, updated_at FROM {t.name} WHERE updated_at >= {ph}",
                "stream": t.stream,
                "pkey_column": "id",
                "epoch_column": "updated_at",
                "deleted_column": "deleted",
                "track_keys": t.hard_deletes,
                "variant": "soak.v1",
            })  # fmt: skip
        document = {
            "dag_id_prefix": "soak_",
            "start_date": "2026-01-01",
            "defaults": {
                "lookback": f"{self.s.lookback}s",
                "schedule": self.s.schedule,
                "lock_lease": f"{self.s.lock_lease}s",
                "transaction_guard": True,
                "retries": 10,
                "retry_delay": "5s",
                "execution_timeout": "5m",
                "tags": ["soak"],
            },
            "sources": sources,
        }
        import yaml

        (dags / "soak.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        (dags / "soak_streams.py").write_text(
            "from pathlib import Path\n\nfrom airflow_dbstream.factory import dags_from_yaml\n\n"
            "globals().update(dags_from_yaml(Path(__file__).with_name('soak.yaml')))\n"
        )

    def write_reconcile_dags(self) -> None:
        """After the streams' first cycles: a reconcile refuses a stream whose first cycle has not run."""
        hard = [t for t in self.tables if t.hard_deletes]
        (self.home / "dags" / "soak_reconcile.py").write_text(RECONCILE_DAGS.format(
            tables=json.dumps([[t.name, "soak_pg" if t.kind == "pg" else "soak_my", f"soak_redis_{t.redis}",
                                t.stream] for t in hard]),
            schedule=_seconds(self.s.reconcile_schedule), lookback=self.s.lookback,
        ))  # fmt: skip

    def start_airflow(self) -> None:
        env = self.env()
        t0 = time.monotonic()
        self.run_cli("db", "migrate", timeout=600)
        log(f"airflow db migrate: {time.monotonic() - t0:.0f} s")
        self.import_connections()
        for name, argv in (
            ("api-server", [AIRFLOW, "api-server", "--port", str(self.api_port), "--host", "127.0.0.1",
                            "--workers", "1"]),
            ("scheduler", [AIRFLOW, "scheduler"]),
            ("dag-processor", [AIRFLOW, "dag-processor"]),
            ("triggerer", [AIRFLOW, "triggerer"]),
        ):  # fmt: skip
            self.procs[name] = Proc(name, argv, env, self.logdir).start()
        for i in range(1, WORKERS + 1):
            self.procs[f"worker{i}"] = self.worker(i, env).start()

    def worker(self, i: int, env: dict[str, str]) -> Proc:
        # Logs are read from the files here: two workers on one host cannot both serve them on 8793.
        argv = [AIRFLOW, "celery", "worker", "--celery-hostname", f"soak{i}-{self.id}@%h", "--queues",
                self.queue, "--skip-serve-logs", "--without-gossip", "--without-mingle"]  # fmt: skip
        return Proc(f"worker{i}", argv, env, self.logdir)

    def meta(self) -> psycopg.Connection:
        return psycopg.connect(
            f"host=127.0.0.1 port=5432 user=postgres dbname={self.metadb}", autocommit=True
        )

    def streams_cycled(self) -> int:
        """How many stream DAGs have run a cycle successfully."""
        try:
            with self.meta() as m:
                return m.execute(
                    "SELECT count(DISTINCT dag_id) FROM task_instance WHERE state = 'success' "
                    "AND task_id LIKE '%%_to_stream'"
                ).fetchone()[0]
        except psycopg.Error:
            return 0

    def wait_streams_running(self, want: int, timeout: float = 300) -> None:
        """Until ``want`` stream DAGs have run a cycle: the deployment works end to end."""
        deadline = time.monotonic() + timeout
        while (done := self.streams_cycled()) < want:
            self.check_procs()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{done} of {want} streams ran a cycle within {timeout:.0f} s; see {self.logdir}"
                )
            time.sleep(2)

    def check_procs(self) -> None:
        for name, proc in self.procs.items():
            if not proc.alive() and not name.startswith("worker"):
                raise RuntimeError(f"{name} exited ({proc.popen.returncode}); its log: {proc.logfile}")

    # -- faults -----------------------------------------------------------------------------------------

    def busy_worker(self, timeout: float = 20.0) -> Proc:
        deadline = time.monotonic() + timeout
        workers = [p for n, p in self.procs.items() if n.startswith("worker")]
        while time.monotonic() < deadline:
            busy = [w for w in workers if w.busy()]
            if busy:
                return self.rng.choice(busy)
            time.sleep(0.2)
        return self.rng.choice(workers)

    def fault(self, kind: str) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": kind, "at": time.strftime("%H:%M:%S"), "t": time.time()}
        if kind == "kill_worker":
            worker = self.busy_worker()
            record.update(worker=worker.name, mid_cycle=worker.busy())
            worker.kill()
            time.sleep(2)
            worker.start()
        elif kind == "pause_worker":
            worker = self.busy_worker()
            pause = self.s.lock_lease + 2
            record.update(worker=worker.name, mid_cycle=worker.busy(), paused_s=pause)
            worker.signal(signal.SIGSTOP)
            time.sleep(pause)
            worker.signal(signal.SIGCONT)
        elif kind == "kill_source":
            self.wait_source_sessions()
            with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
                killed = pg.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE usename = %s", (self.role,)
                ).fetchone()[0]  # fmt: skip
            my = MySQLdb.connect(**MY_ADMIN)
            cur = my.cursor()
            cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (self.role,))
            ids = [row[0] for row in cur.fetchall()]
            for conn_id in ids:
                with contextlib.suppress(MySQLdb.OperationalError):  # already gone
                    cur.execute(f"KILL {int(conn_id)}")
            my.close()
            record.update(postgres_backends=killed, mariadb_connections=len(ids))
        elif kind == "restart_redis":
            server = self.rng.choice([self.redis_a, self.primary])
            record.update(redis="standalone" if server is self.redis_a else "primary", port=server.port)
            server.kill()
            time.sleep(1)
            server.start()
        elif kind == "script_flush":
            for server in (self.redis_a, self.primary, self.replica):
                server.admin().script_flush()
        elif kind == "failover":
            record.update(self.failover())
        self.faults.append(record)
        log(f"fault {record}")
        return record

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to the deployment's REST API (the simple auth manager gives every caller a token)."""
        import urllib.request

        base = f"http://127.0.0.1:{self.api_port}"
        with urllib.request.urlopen(f"{base}/auth/token", timeout=30) as reply:
            token = json.load(reply)["access_token"]
        request = urllib.request.Request(
            base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.load(reply)

    def move_connection(self, conn_id: str, server: RedisServer) -> None:
        """Point a connection of the metadata database at another Redis: the next tasks read it."""
        spec = self.redis_connection(server)
        body = {"connection_id": conn_id, "conn_type": "redis", "host": spec["host"], "port": spec["port"],
                "extra": json.dumps(spec["extra"])}  # fmt: skip
        self.api("PATCH", f"/api/v2/connections/{conn_id}", body)
        assert self.api("GET", f"/api/v2/connections/{conn_id}")["port"] == server.port

    @staticmethod
    def wait_in_sync(primary: RedisServer, replica: RedisServer, timeout: float = 30.0) -> bool:
        """Until the replica's link is up and it has all the primary wrote (a healthy pair fails over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                r = replica.admin().info("replication")
                p = primary.admin().info("replication")
                if (
                    r.get("master_link_status") == "up"
                    and r.get("slave_repl_offset") == p["master_repl_offset"]
                ):
                    return True
            time.sleep(0.2)
        return False

    def wait_source_sessions(self, timeout: float = 20.0) -> None:
        """Until a cycle holds a session of the soak's own role open (they last a cycle), or timeout."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
            my = MySQLdb.connect(**MY_ADMIN)
            try:
                while time.monotonic() < deadline:
                    n = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (self.role,))
                    cur = my.cursor()
                    cur.execute("SELECT count(*) FROM information_schema.processlist WHERE user = %s",
                                (self.role,))  # fmt: skip
                    if n.fetchone()[0] + cur.fetchone()[0]:
                        return
                    time.sleep(0.05)
            finally:
                my.close()

    def failover(self) -> dict[str, Any]:
        """The primary crashes while its replica lags; the replica is promoted, the connection moved.

        The replica is paused (SIGSTOP) and its link dropped until a cycle appended to the primary (at
        most ``replica_lag`` seconds), so that replication is behind as asynchronous replication can be
        at any moment; then the primary is
        SIGKILLed, the replica resumed and promoted (REPLICAOF NO ONE), the ``soak_redis_pr``
        connection in the metadata database moved to it (the REST API's PATCH /api/v2/connections: a
        connection from an environment variable could not change under running workers), and the old
        primary restarted as the new replica.
        """
        old, new = self.primary, self.replica
        assert old.proc is not None and new.proc is not None
        in_sync = self.wait_in_sync(old, new)
        new.proc.send_signal(signal.SIGSTOP)  # the link drops and the replica cannot reconnect:
        old.admin().client_kill_filter(_type="replica")  # what the primary writes now is not replicated
        before = {t.stream: old.admin().xlen(t.stream) for t in self.tables if t.redis == "pr"}
        deadline = time.monotonic() + self.s.replica_lag
        while time.monotonic() < deadline:  # until a cycle appended what the replica will not have
            if any(old.admin().xlen(k) > n for k, n in before.items()):
                time.sleep(0.2)  # and a little more of it
                break
            time.sleep(0.1)
        lag_s = self.s.replica_lag - max(0.0, deadline - time.monotonic())
        p_info = old.admin().info("replication")
        lengths = {t.stream: old.admin().xlen(t.stream) for t in self.tables if t.redis == "pr"}
        old.kill()
        new.proc.send_signal(signal.SIGCONT)
        time.sleep(0.5)  # it reads what was already in its socket before the link dropped
        r_info = new.admin().info("replication")
        same_history = r_info.get("master_replid") == p_info["master_replid"]
        new.admin().execute_command("REPLICAOF", "NO", "ONE")
        self.primary, self.replica = new, old
        promoted = {t.stream: new.admin().xlen(t.stream) for t in self.tables if t.redis == "pr"}
        t0 = time.monotonic()
        self.move_connection("soak_redis_pr", new)
        moved_s = time.monotonic() - t0
        old.start()
        old.admin().execute_command("REPLICAOF", "127.0.0.1", str(new.port))
        lost = sum(max(0, lengths[k] - promoted[k]) for k in lengths)
        return {
            "replica_lag_s": round(lag_s, 1),
            "replica_in_sync_before": in_sync,
            "unreplicated_bytes": (
                p_info["master_repl_offset"] - r_info.get("slave_repl_offset", 0) if same_history else None
            ),
            "entries_lost_at_promotion": lost,
            "connection_moved_s": round(moved_s, 1),
        }

    # -- the run ----------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            self.setup_broker()
            self.setup_databases()
            for server in (self.redis_a, self.redis_p, self.redis_r):
                server.start()
            self.redis_r.admin().execute_command("REPLICAOF", "127.0.0.1", str(self.redis_p.port))
            self.wlog = WriterLog(self.home / "writers.jsonl")
            self.stop_writers = threading.Event()
            self.writers = [
                Writer(t, self.wlog, self.s.rate, self.s.hold, self.stop_writers, self.rng.randrange(1 << 30))
                for t in self.tables
            ]
            for w in self.writers:
                w.seed(self.s.seed_rows)
            self.write_dags()
            self.start_airflow()
            self.wait_streams_running(1)
            log(f"deployment up, a first cycle ran, {time.monotonic() - started:.0f} s")
            self.cpu_start = self.cpu_figures()
            self.cycles_start = self.cycle_counts()
            figures = self.soak()
            figures["setup_s"] = round(self.t_soak - started, 1)
            figures["total_s"] = round(time.monotonic() - started, 1)
            self.passed = bool(figures["ok"])
            return figures
        finally:
            self.teardown()

    def soak(self) -> dict[str, Any]:
        s = self.s
        wlog, stop, writers = self.wlog, self.stop_writers, self.writers
        stop_consumer = threading.Event()
        consumer = Consumer(self, stop_consumer)
        consumer.start()
        self.t_soak = time.monotonic()
        for w in writers:
            w.start()
        end = time.monotonic() + s.duration
        kinds: list[str] = []
        next_fault = time.monotonic() + self.rng.uniform(*s.fault_every)
        reconciling, next_look = False, 0.0
        while time.monotonic() < end:
            self.check_procs()
            if not reconciling and time.monotonic() > next_look:
                next_look = time.monotonic() + 5
                if self.streams_cycled() == len(self.tables):
                    self.write_reconcile_dags()
                    reconciling = True
                    after = time.monotonic() - self.t_soak
                    log(f"every stream ran a cycle; reconcile DAGs written after {after:.0f} s")
            if s.faults and time.monotonic() >= next_fault:
                if not kinds:
                    kinds = list(s.faults)
                    self.rng.shuffle(kinds)
                self.fault(kinds.pop())
                next_fault = time.monotonic() + self.rng.uniform(*s.fault_every)
            time.sleep(0.5)
            errors = [w.error for w in writers if w.error]
            if errors:
                raise RuntimeError(f"a writer failed: {errors[0]!r}")
        stop.set()
        if not reconciling:
            self.wait_streams_running(len(self.tables))
            self.write_reconcile_dags()
        for w in writers:
            w.join(60)
        wlog.close()
        errors = [w.error for w in writers if w.error]
        if errors:
            raise RuntimeError(f"a writer failed: {errors[0]!r}")
        log(f"writers stopped: {len(wlog.versions)} committed versions; draining")
        t_drain = time.monotonic()
        deadline = t_drain + s.drain_timeout
        while True:
            result = check(
                self.tables, wlog.versions, self.read_streams(), self.cycle_times(), consumer.seen()
            )
            if result["ok"] or time.monotonic() > deadline:
                break
            time.sleep(5)
        streams = self.read_streams()
        stop_consumer.set()
        consumer.join(30)
        result = check(self.tables, wlog.versions, streams, self.cycle_times(), consumer.seen())
        figures = {
            "ok": result["ok"],
            "streams": len(self.tables),
            "postgres_streams": sum(t.kind == "pg" for t in self.tables),
            "mariadb_streams": sum(t.kind == "my" for t in self.tables),
            "streams_on_primary_with_replica": sum(t.redis == "pr" for t in self.tables),
            "duration_s": s.duration,
            "drain_s": round(time.monotonic() - t_drain, 1),
            "faults": dict(Counter(f["kind"] for f in self.faults)),
            "fault_log": self.faults,
            **{k: v for k, v in result.items() if k != "ok"},
            **consumer.figures(streams),
            **self.cycle_figures(),
            "seed": s.seed,
            "logs": str(self.home),
        }
        return figures

    def read_streams(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for t in self.tables:
            client = (self.redis_a if t.redis == "a" else self.primary).admin(decode_responses=True)
            out[t.stream] = [{"id": mid, **fields_} for mid, fields_ in client.xrange(t.stream)]
        return out

    def cycle_times(self) -> dict[str, list[tuple[float, float]]]:
        """Each table's successful cycles (task start, end), in start order."""
        with self.meta() as m:
            rows = m.execute(
                "SELECT dag_id, extract(epoch FROM start_date), extract(epoch FROM end_date)"
                " FROM task_instance WHERE state = 'success' AND task_id LIKE '%%_to_stream'"
                " ORDER BY start_date"
            ).fetchall()
        times: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for dag_id, start, end in rows:
            times[dag_id.removeprefix("soak_")].append((float(start), float(end)))
        return times

    def cycle_counts(self) -> dict[str, int]:
        with self.meta() as m:
            rows = m.execute(
                "SELECT CASE WHEN task_id LIKE '%%_to_stream' THEN 'cycle' ELSE 'reconcile' END, state, "
                "count(*)"
                " FROM task_instance GROUP BY 1, 2"
            ).fetchall()
            tries = m.execute("SELECT coalesce(sum(try_number), 0) FROM task_instance").fetchone()[0]
        counts = {f"{kind}_{state}": n for kind, state, n in rows}
        counts["tries"] = int(tries)
        return counts

    def cpu_figures(self) -> dict[str, float]:
        return {
            "scheduler": self.procs["scheduler"].cpu(),
            "workers": sum(p.cpu() for n, p in self.procs.items() if n.startswith("worker")),
            "dag_processor": self.procs["dag-processor"].cpu(),
            "api_server": self.procs["api-server"].cpu(),
        }

    def cycle_figures(self) -> dict[str, Any]:
        cpu = self.cpu_figures()
        counts = self.cycle_counts()
        cycles = counts.get("cycle_success", 0) - self.cycles_start.get("cycle_success", 0)
        tasks = sum(n for k, n in counts.items() if k.endswith("_success")) - sum(
            n for k, n in self.cycles_start.items() if k.endswith("_success")
        )
        used = {k: cpu[k] - self.cpu_start[k] for k in cpu}
        return {
            "cycles_run": cycles,
            "task_instances": counts,
            "cpu_s": {k: round(v, 1) for k, v in used.items()},
            "task_runs": tasks,
            "cpu_ms_per_task_run": {k: round(1000 * v / max(tasks, 1)) for k, v in used.items()},
        }

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        for proc in reversed(list(self.procs.values())):
            try:
                proc.stop()
            except Exception as exc:
                log(f"stopping {proc.name}: {exc!r}")
        for server in (self.redis_a, self.redis_p, self.redis_r):
            server.stop()
        for kind, name in reversed(self.cleanups):
            try:
                if kind == "vhost":
                    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=60)
                elif kind in ("metadb", "pgrole", "pgtable"):
                    with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
                        if kind == "metadb":
                            pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                        elif kind == "pgrole":
                            pg.execute(f"DROP OWNED BY {name}")
                            pg.execute(f"DROP ROLE IF EXISTS {name}")
                        else:
                            pg.execute(f"DROP TABLE IF EXISTS {name}")
                else:
                    my = MySQLdb.connect(**MY_ADMIN)
                    if kind == "myuser":
                        my.cursor().execute(f"DROP USER IF EXISTS '{name}'@'%'")
                    else:
                        my.cursor().execute(f"DROP TABLE IF EXISTS {name}")
                    my.close()
            except Exception as exc:
                log(f"cleanup of {kind} {name}: {exc!r}")
        if self.s.keep or not self.passed:  # a failed soak keeps its logs for the one who reads why
            log(f"logs kept in {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)


RECONCILE_DAGS = '''"""The soak's hard deletes: a ReconcileDeletesOperator DAG per table that hard-deletes."""

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_dbstream.operators.reconcile_deletes import ReconcileDeletesOperator

for table, sql_conn, redis_conn, stream in {tables}:
    with DAG(
        dag_id=f"soak_reconcile_{{table}}",
        schedule=timedelta(seconds={schedule}),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={{"retries": 10, "retry_delay": timedelta(seconds=5)}},
        tags=["soak"],
    ) as dag:
        ReconcileDeletesOperator(
            task_id="reconcile",
            sql_conn_id=sql_conn,
            redis_conn_id=redis_conn,
            sql=f"SELECT id FROM {{table}}",
            stream=stream,
            pkey_column="id",
            lookback=timedelta(seconds={lookback}),
            variant="soak.v1",
            lock_wait=timedelta(seconds=30),
        )
    globals()[dag.dag_id] = dag
'''


def _seconds(value: str) -> float:
    from airflow_dbstream.factory import parse_duration

    return parse_duration(value, "soak").total_seconds()


# ------------------------------------------------------------------------------------------------ the check


def check(
    tables: list[Table],
    versions: list[Version],
    streams: dict[str, list[dict[str, Any]]],
    cycles: dict[str, list[tuple[float, float]]] | None = None,
    consumed: set[tuple[Any, ...]] | frozenset = frozenset(),
) -> dict:
    """Every stream against the writers' log; the figures, and the first stream that differs.

    Polling reads a row's state at each cycle, so a version overwritten before any cycle read it is
    never seen (``coalesced``, not lost). What must hold, per key: every message is a committed version
    (same epoch, same ``v``), none twice, epochs strictly increasing; the key's last committed version
    is its last message (a soft delete as ``op=delete``, exactly one); a hard-deleted key that was ever
    emitted ends with exactly one tombstone (``payload`` null) and nothing after it. And a version that
    was the row's for the whole of a successful cycle (``cycles``: each stream's successful task runs,
    start and end) must be there: that cycle read it (``must_read``; missing ones count as ``lost``),
    unless the consumer read it (``consumed``) and it is gone: Redis lost it after it was appended (a
    failover to a replica that had not got it) and the row changed again before a cycle re-read it
    (``rolled_back``, the failover's own effect; see docs/soak.md).
    """
    by_table: dict[str, dict[str, list[Version]]] = defaultdict(lambda: defaultdict(list))
    for version in versions:
        by_table[version.table][version.pkey].append(version)
    totals = Counter()
    freshness: list[float] = []
    first_bad: dict[str, Any] | None = None
    problems: dict[str, dict[str, int]] = {}
    for t in tables:
        messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in streams.get(t.stream, []):
            messages[m["pkey"]].append(m)
        bad: list[dict[str, Any]] = []
        for pkey in set(by_table[t.name]) | set(messages):
            committed = by_table[t.name].get(pkey, [])
            got = messages.get(pkey, [])
            known = {(c.epoch, c.v): c for c in committed if c.epoch is not None}
            upserts = [m for m in got if m.get("payload") != "null"]
            tombstones = [m for m in got if m.get("payload") == "null"]
            seen: Counter = Counter()
            last_epoch = -1
            for m in upserts:
                payload = json.loads(m["payload"])
                key = (int(m["epoch"]), int(payload["v"]))
                seen[key] += 1
                if key not in known:
                    bad.append({"pkey": pkey, "problem": "never committed", "message": m})
                    totals["phantom"] += 1
                elif seen[key] > 1:
                    ids = [
                        x["id"]
                        for x in upserts
                        if (int(x["epoch"]), int(json.loads(x["payload"])["v"])) == key
                    ]
                    bad.append(
                        {"pkey": pkey, "problem": "duplicated", "epoch": key[0], "v": key[1], "ids": ids}
                    )
                    totals["duplicated"] += 1
                else:
                    freshness.append(int(m["id"].split("-")[0]) / 1000 - known[key].committed)
                if key[0] <= last_epoch and seen[key] == 1:
                    bad.append({"pkey": pkey, "problem": "epoch order", "epoch": key[0], "after": last_epoch})
                    totals["out_of_order"] += 1
                last_epoch = max(last_epoch, key[0])
                op = m.get("op")
                if (op == "delete") != (known.get(key) is not None and known[key].op == "softdelete"):
                    bad.append({"pkey": pkey, "problem": "op", "epoch": key[0], "op": op})
                    totals["wrong_op"] += 1
            runs = (cycles or {}).get(t.name, [])
            starts = [start for start, _ in runs]
            for version, following in itertools.pairwise(committed):
                if version.epoch is None:
                    continue
                i = bisect.bisect_left(starts, version.committed)
                while i < len(runs) and runs[i][0] <= following.began and runs[i][1] > following.began:
                    i += 1
                if i < len(runs) and runs[i][1] <= following.began:  # a cycle ran while it was the row's
                    totals["must_read"] += 1
                    op = "delete" if version.op == "softdelete" else None
                    if (version.epoch, version.v) in seen:
                        pass
                    elif (t.stream, pkey, str(version.epoch), version.v, op) in consumed:
                        totals["rolled_back"] += 1
                    else:
                        bad.append({"pkey": pkey, "problem": "missing, though a cycle ran while it was the "
                                    "row's", "version": version.__dict__, "cycle": runs[i]})  # fmt: skip
                        totals["lost"] += 1
            totals["versions_checked"] += len([c for c in committed if c.epoch is not None])
            totals["versions_in_stream"] += len(set(seen) & set(known))
            final = committed[-1] if committed else None
            if final is None:
                continue
            if final.op == "harddelete":
                totals["hard_deletes"] += 1
                if upserts and len(tombstones) != 1:
                    bad.append({"pkey": pkey, "problem": f"{len(tombstones)} tombstones for one hard delete"})
                    totals["lost" if not tombstones else "duplicated"] += 1
                elif upserts and got[-1] is not tombstones[0]:
                    bad.append({"pkey": pkey, "problem": "messages after the tombstone"})
                    totals["out_of_order"] += 1
                last_upsert = next((c for c in reversed(committed) if c.epoch is not None), None)
                missing_last = (
                    last_upsert is not None
                    and upserts
                    and (int(upserts[-1]["epoch"]), int(json.loads(upserts[-1]["payload"])["v"]))
                    != (last_upsert.epoch, last_upsert.v)
                )
                totals["coalesced"] += int(bool(missing_last))
                continue
            if tombstones:
                bad.append({"pkey": pkey, "problem": "tombstone of a live key", "tombstones": tombstones})
                totals["wrong_op"] += 1
            last = upserts[-1] if upserts else None
            last_key = (int(last["epoch"]), int(json.loads(last["payload"])["v"])) if last else None
            if last_key != (final.epoch, final.v):
                bad.append({"pkey": pkey, "problem": "last committed version missing",
                            "committed": final.__dict__, "last_in_stream": last_key})  # fmt: skip
                totals["lost"] += 1
            if final.op == "softdelete":
                totals["soft_deletes"] += 1
        if bad:
            problems[t.stream] = dict(Counter(b["problem"] for b in bad))
        if bad and first_bad is None:
            first_bad = {"stream": t.stream, "differences": bad[:20], "count": len(bad)}
    committed_versions = totals["versions_checked"]
    freshness.sort()

    def pct(q: float) -> float | None:
        return round(freshness[min(len(freshness) - 1, int(q * len(freshness)))], 2) if freshness else None

    return {
        "ok": first_bad is None,
        "versions_committed": committed_versions,
        "versions_in_stream": totals["versions_in_stream"],
        "coalesced": committed_versions - totals["versions_in_stream"],
        "must_read": totals["must_read"],
        "rolled_back": totals["rolled_back"],
        "lost": totals["lost"],
        "duplicated": totals["duplicated"],
        "out_of_order": totals["out_of_order"],
        "phantom": totals["phantom"],
        "wrong_op": totals["wrong_op"],
        "soft_deletes": totals["soft_deletes"],
        "hard_deletes": totals["hard_deletes"],
        "freshness_p50_s": pct(0.5),
        "freshness_p95_s": pct(0.95),
        "first_difference": first_bad,
        "differences_by_stream": problems,
    }


def run_soak(**overrides: Any) -> dict[str, Any]:
    return Soak(Settings(**overrides)).run()


def main(argv: list[str] | None = None) -> int:
    from airflow_dbstream.factory import parse_duration

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="2m", help="writing and faults, e.g. 3m, 30m (default 2m)")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--faults", help=f"comma-separated kinds (default: all, {','.join(FAULT_KINDS)})")
    parser.add_argument(
        "--fault-every", default="12-25", help="seconds between faults: min-max, default 12-25"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the logs")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"duration": parse_duration(args.duration, "--duration").total_seconds()}
    if args.no_faults:
        overrides["faults"] = ()
    elif args.faults:
        overrides["faults"] = tuple(args.faults.split(","))
    low, _, high = args.fault_every.partition("-")
    overrides["fault_every"] = (float(low), float(high or low))
    if args.seed is not None:
        overrides["seed"] = args.seed
    overrides["keep"] = args.keep
    soak = Soak(Settings(**overrides))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))  # finally-blocks stop everything
    figures = soak.run()
    print(json.dumps(figures, indent=2, default=str))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
