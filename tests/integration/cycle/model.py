"""Model-based check of exactly-once per version: a seeded random simulator drives the real servers.

Each history runs random steps against a real Postgres table and a Redis server of its own (AOF on):
inserts, updates, edits within the same timestamp tick, late commits inside the lookback, and
cycles of the real operator, some of them failing at a random point (before or after a batch's
emit call ran, before the commit, after the commit but before the trim), some with the script cache
flushed or Redis killed and restarted between batches, followed by reruns. A model of the spec
(a version is emitted when its key is new, its epoch newer, or same epoch with new content;
the watermark is the highest epoch read, and moves only when a cycle commits) predicts the exact
stream. After each history the stream must equal the model's, message for message.

With ``dead_letter=True`` the histories also write bad rows (a version whose SQL output has a NULL key
or a NULL epoch) and cycles run with ``on_bad_row="dead_letter"``: the model predicts the dead-letter
stream too (every bad version once, in the order read), and a bad row fixed later is emitted as usual.

Run thousands: ``.venv/bin/python -m tests.integration.cycle.model --histories 5000 --seed 1``
(needs the Postgres of this machine; starts and stops its own redis-server).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from airflow_dbstream.core.epoch import datetime_to_us, us_to_datetime
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks.redis_stream import RedisStreamHook

LOOKBACK_US = 50_000  # 50 ms of simulated time
PG_DSN = os.environ.get("DBSTREAM_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_CONN = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}

FAULTS = (
    "crash_before_emit", "crash_after_emit", "crash_before_commit", "crash_after_commit", "script_flush",
)  # fmt: skip


class Crash(Exception):
    """The simulated worker dies here."""


@dataclass
class Figures:
    histories: int = 0
    cycles: int = 0
    faults: Counter = field(default_factory=Counter)
    versions_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_letters_checked: int = 0
    dead_lost: int = 0
    dead_duplicated: int = 0
    mismatched_histories: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "histories": self.histories,
            "cycles": self.cycles,
            "faults_injected": sum(self.faults.values()),
            "faults": dict(sorted(self.faults.items())),
            "versions_checked": self.versions_checked,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "dead_letters_checked": self.dead_letters_checked,
            "dead_lost": self.dead_lost,
            "dead_duplicated": self.dead_duplicated,
            "mismatched_histories": self.mismatched_histories[:10],
        }


class FaultPlan:
    """The fault of the cycle now running: which point, which batch. Consulted by the hook wrappers."""

    kind: str | None = None
    batch: int = 0
    emits: int = 0
    server: Any = None

    def arm(self, kind: str | None, batch: int = 0) -> None:
        self.kind, self.batch, self.emits = kind, batch, 0


PLAN = FaultPlan()


def install(patch) -> None:
    """Wrap the hook's emit/commit/trim so the plan can fail or disturb a cycle at its point."""
    real_emit, real_commit, real_trim = RedisStreamHook.emit, RedisStreamHook.commit, RedisStreamHook.trim

    def emit(self, *args, **kwargs):
        PLAN.emits += 1
        at = PLAN.emits == PLAN.batch
        if at and PLAN.kind == "crash_before_emit":
            raise Crash("before emit")
        if at and PLAN.kind == "script_flush":
            PLAN.server.admin().script_flush()
        if at and PLAN.kind == "redis_restart":
            PLAN.server.kill()
            threading.Timer(0.2, PLAN.server.start).start()
        result = real_emit(self, *args, **kwargs)
        if at and PLAN.kind == "crash_after_emit":
            raise Crash("after emit: the call ran, its reply is lost")
        return result

    def commit(self, *args, **kwargs):
        if PLAN.kind == "crash_before_commit":
            raise Crash("before commit")
        return real_commit(self, *args, **kwargs)

    def trim(self, *args, **kwargs):
        if PLAN.kind == "crash_after_commit":
            raise Crash("after commit, before trim")
        return real_trim(self, *args, **kwargs)

    patch(RedisStreamHook, "emit", emit)
    patch(RedisStreamHook, "commit", commit)
    patch(RedisStreamHook, "trim", trim)


def bad_kind(name: str) -> str | None:
    """The bad rows of a dead-letter history: the SQL reads a NULL key or a NULL epoch for them."""
    return next((kind for kind in ("nokey", "noepoch") if name.startswith(kind)), None)


class Model:
    """The spec, in memory: rows, the dedup state per key, the watermark, the stream it implies."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[int, str]] = {}  # id -> (epoch, name)
        self.last: dict[int, tuple[int, str]] = {}  # id -> last emitted (epoch, name)
        self.watermark: int | None = None
        self.stream: list[tuple[int, int, str]] = []
        # dead letters as (pkey, name, epoch), pkey/epoch None where the SQL reads them NULL: the
        # values' text, which identifies a bad version
        self.dead: list[tuple[int | None, str, int | None]] = []
        self.dead_seen: set[tuple[int | None, str, int | None]] = set()

    def window(self) -> list[tuple[int, int, str]]:
        # W - lookback, widened to the whole second as the Postgres source binds it (see second_bound)
        start = -1 if self.watermark is None else (self.watermark - LOOKBACK_US) // 1_000_000 * 1_000_000
        return sorted((e, i, n) for i, (e, n) in self.rows.items() if e >= start)

    def cycle(
        self, batch_size: int, applied_batches: int | None, commits: bool, lettered_batches: int | None = None
    ) -> None:
        """``applied_batches``: how many batches reached the stream; ``lettered_batches`` (default: as
        many): how many had their dead letters sent too (they go after the batch's messages)."""
        read = self.window()
        batches = [read[k : k + batch_size] for k in range(0, len(read), batch_size)]
        applied = batches if applied_batches is None else batches[:applied_batches]
        lettered = len(applied) if lettered_batches is None else lettered_batches
        for b, batch in enumerate(applied):
            for epoch, pkey, name in batch:
                kind = bad_kind(name)
                if kind is not None:
                    letter = (None if kind == "nokey" else pkey, name, None if kind == "noepoch" else epoch)
                    if b < lettered and letter not in self.dead_seen:
                        self.dead_seen.add(letter)
                        self.dead.append(letter)
                    continue
                last = self.last.get(pkey)
                if last is None or epoch > last[0] or (epoch == last[0] and name != last[1]):
                    self.stream.append((pkey, epoch, name))
                    self.last[pkey] = (epoch, name)
        epochs = [e for e, _i, n in read if bad_kind(n) != "noepoch"]  # a NULL epoch moves nothing
        if commits and epochs:
            self.watermark = max(self.watermark or epochs[-1], epochs[-1])

    def batches(self, batch_size: int) -> int:
        return -(-len(self.window()) // batch_size)


class Simulator:
    """Runs seeded histories against Postgres (one table) and a Redis server of its own."""

    def __init__(
        self,
        server: Any,
        redis_conn_id: str,
        pg_conn_id: str,
        restart_rate: float = 0.01,
        *,
        dead_letter: bool = False,
    ) -> None:
        self.dead_letter = dead_letter
        self.server = server
        self.redis_conn_id = redis_conn_id
        self.pg_conn_id = pg_conn_id
        self.restart_rate = restart_rate
        self.table = f"model_{uuid.uuid4().hex[:10]}"
        self.db = psycopg.connect(PG_DSN, autocommit=True)
        self.db.execute(
            f"CREATE TABLE {self.table} (hist bigint, id bigint, name text NOT NULL, "
            "updated_at timestamptz NOT NULL, PRIMARY KEY (hist, id))"
        )
        self.db.execute(f"CREATE INDEX ON {self.table} (hist, updated_at)")
        self.sql = (
            f"SELECT id, name, updated_at FROM {self.table} "
            "WHERE hist = %(hist)s AND updated_at >= %(window_start)s ORDER BY updated_at, id"
        )
        if dead_letter:  # the bad rows read a NULL key or epoch; the order is the table's, as the model's
            self.sql = (
                "SELECT CASE WHEN t.name LIKE 'nokey%%' THEN NULL ELSE t.id END AS id, t.name, "
                "CASE WHEN t.name LIKE 'noepoch%%' THEN NULL ELSE t.updated_at END AS updated_at "
                f"FROM {self.table} AS t WHERE t.hist = %(hist)s AND t.updated_at >= %(window_start)s "
                "ORDER BY t.updated_at, t.id"
            )
        self.figures = Figures()
        self.base_us = datetime_to_us(datetime.now(UTC) - timedelta(days=1), UTC)
        PLAN.server = server

    def close(self) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.db.close()

    def _write(self, hist: int, pkey: int, epoch: int, name: str, insert: bool) -> None:
        at = us_to_datetime(epoch)
        if insert:
            self.db.execute(
                f"INSERT INTO {self.table} (hist, id, name, updated_at) VALUES (%s, %s, %s, %s)",
                (hist, pkey, name, at),
            )
        else:
            self.db.execute(
                f"UPDATE {self.table} SET name = %s, updated_at = %s WHERE hist = %s AND id = %s",
                (name, at, hist, pkey),
            )

    def _cycle(self, hist: int, stream: str, batch_size: int) -> None:
        from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

        SqlToRedisStreamOperator(
            task_id="model_cycle",
            sql_conn_id=self.pg_conn_id,
            redis_conn_id=self.redis_conn_id,
            sql=self.sql,
            parameters={"hist": hist},
            stream=stream,
            pkey_column="id",
            epoch_column="updated_at",
            lookback=timedelta(microseconds=LOOKBACK_US),
            variant="model.v1",
            batch_size=batch_size,
            # The simulated writers' clock runs a day behind the database's: fine for windows, which
            # follow the epochs read, but outside what the resumable snapshot assumes (writer skew
            # within lookback of the database clock). The first load is read in one pass here.
            snapshot_chunk_size=None,
            on_bad_row="dead_letter" if self.dead_letter else "fail",
        ).execute(context={})

    def history(self, seed: int, hist: int) -> bool:
        """One seeded history; returns whether the stream equals the model's exactly."""
        rnd = random.Random(seed * 1_000_003 + hist)
        stream = f"model:{seed}:{hist}"
        model = Model()
        batch_size = rnd.randint(2, 6)
        clock = self.base_us + rnd.randint(0, 3_600_000_000)
        rev = 0
        for _ in range(rnd.randint(6, 22)):
            clock += rnd.randint(1_000, 20_000)
            ops, weights = ["insert", "update", "same_tick", "late", "cycle", "bad"], [3, 3, 2, 2, 4, 2]
            op = rnd.choices(
                ops[:-1] if not self.dead_letter else ops, weights[: len(ops) - (not self.dead_letter)]
            )[0]
            rev += 1
            if op == "bad":  # a new bad version of a row, new or known; a later update fixes it
                pkey = rnd.choice([*sorted(model.rows), len(model.rows) + 1])
                clock += rnd.randint(1, 3)
                insert = pkey not in model.rows
                model.rows[pkey] = (clock, f"{rnd.choice(['nokey', 'noepoch'])}-r{rev}-{pkey}")
                self._write(hist, pkey, clock, model.rows[pkey][1], insert=insert)
            elif op == "insert" or (op in ("update", "same_tick", "late") and not model.rows):
                for _ in range(rnd.randint(1, 4)):
                    pkey = len(model.rows) + 1
                    clock += rnd.randint(1, 3)
                    model.rows[pkey] = (clock, f"r{rev}-{pkey}")
                    self._write(hist, pkey, clock, model.rows[pkey][1], insert=True)
            elif op == "update":
                for pkey in rnd.sample(sorted(model.rows), min(len(model.rows), rnd.randint(1, 3))):
                    clock += rnd.randint(1, 3)
                    model.rows[pkey] = (clock, f"r{rev}-{pkey}")
                    self._write(hist, pkey, clock, model.rows[pkey][1], insert=False)
            elif op == "same_tick":  # new content, same timestamp: a new version all the same
                recent = [k for k, (e, _n) in model.rows.items() if e >= clock - LOOKBACK_US + 1_000]
                if not recent:
                    continue
                pkey = rnd.choice(sorted(recent))
                model.rows[pkey] = (model.rows[pkey][0], f"r{rev}-{pkey}")
                self._write(hist, pkey, *model.rows[pkey], insert=False)
            elif op == "late":  # committed now, stamped up to almost `lookback` ago
                floor = clock - LOOKBACK_US + 1_000
                if rnd.random() < 0.5:
                    pkey = len(model.rows) + 1
                    epoch, insert = rnd.randint(floor, clock), True
                else:
                    pkey = rnd.choice(sorted(model.rows))
                    low = max(floor, model.rows[pkey][0] + 1)
                    if low > clock:
                        continue
                    epoch, insert = rnd.randint(low, clock), False
                if any(e == epoch for e, _ in model.rows.values()):
                    continue
                model.rows[pkey] = (epoch, f"r{rev}-{pkey}")
                self._write(hist, pkey, epoch, model.rows[pkey][1], insert=insert)
            else:
                self._faulty_cycle(rnd, hist, stream, batch_size, model)
        PLAN.arm(None)
        self._cycle(hist, stream, batch_size)  # the last, clean rerun
        model.cycle(batch_size, None, commits=True)
        self.figures.cycles += 1
        self.figures.histories += 1
        return self._check(stream, model, f"seed={seed} history={hist}")

    def _faulty_cycle(
        self, rnd: random.Random, hist: int, stream: str, batch_size: int, model: Model
    ) -> None:
        kind = None
        if rnd.random() < self.restart_rate:
            kind = "redis_restart"
        elif rnd.random() < 0.45:
            kind = rnd.choice(FAULTS)
        batches = model.batches(batch_size)
        at = rnd.randint(1, max(batches, 1))
        PLAN.arm(kind, at)
        try:
            self._cycle(hist, stream, batch_size)
            crashed = False
        except Crash:
            crashed = True
        self.figures.cycles += 1
        if crashed or (kind in ("script_flush", "redis_restart") and at <= batches):
            self.figures.faults[kind] += 1
        if not crashed:
            model.cycle(batch_size, None, commits=True)
        elif kind == "crash_before_emit":
            model.cycle(batch_size, at - 1, commits=False)
        elif kind == "crash_after_emit":  # the batch's messages went out, not its dead letters
            model.cycle(batch_size, at, commits=False, lettered_batches=at - 1)
        elif kind == "crash_before_commit":
            model.cycle(batch_size, None, commits=False)
        elif kind == "crash_after_commit":
            model.cycle(batch_size, None, commits=True)
        PLAN.arm(None)

    def _check(self, stream: str, model: Model, label: str) -> bool:
        client = self.server.admin()
        got = [
            (int(f[b"pkey"]), int(f[b"epoch"]), json.loads(f[b"payload"])["name"])
            for _id, f in client.xrange(stream, "-", "+")
        ]
        self.figures.versions_checked += len(got)
        counts, want = Counter(got), Counter(model.stream)
        self.figures.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        self.figures.lost += sum((want - counts).values())
        ok = got == model.stream
        # what no model can get wrong: every key's messages in increasing epoch, its last = the row now
        last: dict[int, tuple[int, str]] = {}
        for pkey, epoch, name in got:
            ok &= pkey not in last or epoch >= last[pkey][0]
            last[pkey] = (epoch, name)
        ok &= last == model.last and all(
            last.get(k) == v for k, v in model.rows.items() if not bad_kind(v[1])
        )
        dead = [
            (int(f[b"pkey"]) if b"pkey" in f else None, json.loads(f[b"values"])["name"],
             int(f[b"epoch"]) if b"epoch" in f else None)
            for _id, f in client.xrange(StreamKeys.for_stream(stream).dead, "-", "+")
        ]  # fmt: skip
        self.figures.dead_letters_checked += len(dead)
        self.figures.dead_duplicated += len(dead) - len(set(dead))
        self.figures.dead_lost += len(set(model.dead) - set(dead))
        ok &= dead == model.dead
        state = client.hget(StreamKeys.for_stream(stream).state, "watermark")
        ok &= (int(state) if state else None) == model.watermark
        ok &= not client.exists(StreamKeys.for_stream(stream).lock)
        if not ok:
            self.figures.mismatched_histories.append(label)
        return ok


AOF = ("--appendonly", "yes", "--appendfsync", "always")


def model_workdir() -> Path:
    """The model's Redis keeps its AOF in memory-backed /dev/shm when there is one: fsync is cheap."""
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="dbstream-model-", dir=shm))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--histories", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restart-rate", type=float, default=0.01, help="share of cycles that kill Redis")
    args = parser.parse_args()

    from tests.integration.redis_servers import RedisServer

    server = RedisServer(model_workdir(), *AOF).start()
    os.environ["AIRFLOW_CONN_MODEL_REDIS"] = json.dumps(server.connection())
    os.environ["AIRFLOW_CONN_MODEL_PG"] = json.dumps(PG_CONN)
    install(lambda obj, name, value: setattr(obj, name, value))
    sim = Simulator(server, "model_redis", "model_pg", args.restart_rate)
    started = time.monotonic()
    try:
        for hist in range(args.histories):
            sim.history(args.seed, hist)
            if hist % 100 == 99:
                print(f"{hist + 1} histories, {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        sim.close()
        server.stop()
    result = sim.figures.as_dict() | {"seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result, indent=2))
    return 0 if not result["mismatched_histories"] and not result["lost"] and not result["duplicated"] else 1


if __name__ == "__main__":
    sys.exit(main())


GUARD_LOOKBACK = timedelta(milliseconds=200)  # real time: the held transactions outlive it many times


class GuardSimulator:
    """Seeded histories in real time, rows stamped by the database (``now()``): writers commit at once or
    hold their transaction open across cycles, far longer than lookback; cycles fail at random points
    and are rerun. Each row is written once, so every committed version must be in the stream once."""

    def __init__(self, server: Any, redis_conn_id: str, pg_conn_id: str) -> None:
        self.server, self.redis_conn_id, self.pg_conn_id = server, redis_conn_id, pg_conn_id
        self.table = f"guard_model_{uuid.uuid4().hex[:10]}"
        self.db = psycopg.connect(PG_DSN, autocommit=True)
        self.db.execute(
            f"CREATE TABLE {self.table} (hist bigint, id bigint, name text NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (hist, id))"
        )
        self.sql = (
            f"SELECT id, name, updated_at FROM {self.table} "
            "WHERE hist = %(hist)s AND updated_at >= %(window_start)s ORDER BY updated_at, id"
        )
        self.figures = Figures()
        self.held_longer_than_lookback = 0
        PLAN.server = server

    def close(self) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.db.close()

    def _cycle(self, hist: int, stream: str) -> None:
        from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

        SqlToRedisStreamOperator(
            task_id="guard_model_cycle", sql_conn_id=self.pg_conn_id, redis_conn_id=self.redis_conn_id,
            sql=self.sql, parameters={"hist": hist}, stream=stream, pkey_column="id",
            epoch_column="updated_at", lookback=GUARD_LOOKBACK, variant="model.v1", batch_size=3,
        ).execute(context={})  # fmt: skip

    def history(self, seed: int, hist: int) -> bool:
        rnd = random.Random(seed * 1_000_003 + hist)
        stream = f"guard-model:{seed}:{hist}"
        committed: list[tuple[int, str]] = []
        held: list[tuple[Any, int, str, float]] = []  # connection, pkey, name, when it began
        insert = f"INSERT INTO {self.table} (hist, id, name) VALUES (%s, %s, %s)"
        for step in range(rnd.randint(12, 20)):
            op = rnd.choices(["write", "hold", "commit", "cycle"], weights=[3, 2, 1, 4])[0]
            pkey, name = step + 1, f"h{hist}-s{step}"
            if op == "write":
                self.db.execute(insert, (hist, pkey, name))
                committed.append((pkey, name))
            elif op == "hold":  # begins now; its row, stamped now (its start), commits much later
                writer = psycopg.connect(PG_DSN)
                writer.execute("SELECT 1")
                time.sleep(0.05)
                writer.execute(insert, (hist, pkey, name))
                held.append((writer, pkey, name, time.monotonic()))
            elif op == "commit" and held:
                self._commit(held.pop(rnd.randrange(len(held))), committed)
            else:
                self._faulty_cycle(rnd, hist, stream)
            time.sleep(rnd.uniform(0.02, 0.2))
        for one in held:
            self._commit(one, committed)
        PLAN.arm(None)
        self._cycle(hist, stream)
        self.figures.cycles += 1
        self.figures.histories += 1
        return self._check(stream, committed, f"seed={seed} history={hist}")

    def _commit(self, held: tuple[Any, int, str, float], committed: list[tuple[int, str]]) -> None:
        writer, pkey, name, began = held
        writer.commit()
        writer.close()
        committed.append((pkey, name))
        self.held_longer_than_lookback += time.monotonic() - began > 2 * GUARD_LOOKBACK.total_seconds()

    def _faulty_cycle(self, rnd: random.Random, hist: int, stream: str) -> None:
        kind = rnd.choice(FAULTS) if rnd.random() < 0.4 else None
        PLAN.arm(kind, rnd.randint(1, 3))
        try:
            self._cycle(hist, stream)
        except Crash:
            self.figures.faults[kind] += 1
        self.figures.cycles += 1
        PLAN.arm(None)

    def _check(self, stream: str, committed: list[tuple[int, str]], label: str) -> bool:
        got = [
            (int(f[b"pkey"]), json.loads(f[b"payload"])["name"])
            for _id, f in self.server.admin().xrange(stream, "-", "+")
        ]
        counts, want = Counter(got), Counter(committed)
        self.figures.versions_checked += len(got)
        self.figures.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        self.figures.lost += sum((want - counts).values())
        ok = counts == want
        if not ok:
            self.figures.mismatched_histories.append(label)
        return ok
