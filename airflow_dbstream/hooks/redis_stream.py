"""RedisStreamHook: the redis provider's hook plus the stream's scripts and state."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any

from airflow.providers.redis.hooks.redis import RedisHook
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from airflow_dbstream.core.encoding import Message
from airflow_dbstream.core.errors import RedisPermissionError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.window import trim_cutoff
from airflow_dbstream.hooks import faults
from airflow_dbstream.hooks.scripts import FENCED_SCRIPTS, SCRIPT_NAMES, fenced_source, script_source

TRIM_CHUNK = 1000
RENEW_AFTER = 1 / 6  # of the lease: a batch renews it when this much has passed since the last renewal


@dataclass(frozen=True)
class EmitResult:
    emitted: int
    duplicates: int


@dataclass(frozen=True)
class Lease:
    """This cycle's hold on ``<tag>:lock``: the token the fenced scripts check, the lease length."""

    lock: str
    token: str
    lease_ms: int


class LockBusy(Exception):
    """Another cycle holds the stream's lock (``holder`` names it) for ``ms_left`` more ms."""

    def __init__(self, holder: str, ms_left: int) -> None:
        super().__init__(holder, ms_left)
        self.holder, self.ms_left = holder, ms_left


@dataclass(frozen=True)
class StreamState:
    """What ``<tag>:state`` holds: the committed watermark and the last cycle's figures."""

    watermark_us: int | None
    fields: dict[str, str]


class RedisStreamHook(RedisHook):
    """
    Emits batches through an atomic Lua script and keeps a stream's watermark.

    Uses the redis provider's ``redis`` connection type, so TLS, ACL user/password, ``db`` and the
    ``cluster`` extra work as they do for RedisHook. Scripts run by EVALSHA and are reloaded by
    redis-py's Script on NOSCRIPT (restart, failover, SCRIPT FLUSH).
    """

    conn_type = "dbstream_redis"  # declared in the provider info; `redis` connections work the same
    hook_name = "Redis Stream target (DB Stream)"

    def __init__(self, redis_conn_id: str = RedisHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(redis_conn_id=redis_conn_id, **kwargs)
        self._scripts: dict[str, Any] = {}
        self.lease: Lease | None = None  # set while a cycle holds the stream's lock
        self._renewed_at = 0.0  # time.monotonic() of the last renewal (or acquisition) of the lease

    def _script(self, name: str) -> Any:
        if not self._scripts:
            client = self.get_conn()
            self._scripts = {n: client.register_script(script_source(n)) for n in SCRIPT_NAMES}
            for n in FENCED_SCRIPTS:
                self._scripts[f"fenced_{n}"] = client.register_script(fenced_source(n))
        return self._scripts[name]

    def _run(self, name: str, keys: StreamKeys, script_keys: list[str], args: list[Any]) -> Any:
        """One script call, fenced by the lease when held, retried on transient faults."""
        if self.lease is not None and name in FENCED_SCRIPTS:
            script = self._script(f"fenced_{name}")
            script_keys, args = [*script_keys, self.lease.lock], [*args, self.lease.token]
        else:
            script = self._script(name)
        run = lambda: script(keys=script_keys, args=args)  # noqa: E731
        return faults.call(name, keys.stream, run, source=script.script)

    def get_conn(self) -> Any:
        """The provider's client, with redis-py's reconnect retries kept short: faults.call backs off."""
        fresh = self.redis is None
        client = super().get_conn()
        if fresh and isinstance(client, Redis):
            client.set_retry(Retry(ExponentialBackoff(cap=0.5, base=0.05), 3))
        return client

    @contextmanager
    def cycle_lock(self, keys: StreamKeys, lease_ms: int, wait_s: float = 0.0) -> Iterator[Lease]:
        """
        Hold ``<tag>:lock`` for one cycle; raises LockBusy when another holder keeps it past wait_s.

        The lease is renewed by a heartbeat every third of the lease, and before a batch when a sixth
        of it has passed since the last renewal, so only a worker that is dead or frozen as a whole
        loses it; the fenced scripts then refuse its writes.
        """
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + wait_s
        waiting = False
        while True:
            taken = self._run("lease", keys, [keys.lock], ["acquire", token, lease_ms])
            if int(taken[0]) == 1:
                break
            holder, ms_left = taken[1].decode(), int(taken[2])
            if time.monotonic() >= deadline:
                raise LockBusy(holder, ms_left)
            if not waiting:
                waiting = True
                self.log.info(
                    "Stream %s: another cycle (%s) holds %s for %.1f s more; waiting up to %.1f s",
                    keys.stream, holder, keys.lock, ms_left / 1000, wait_s,
                )  # fmt: skip
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01), max(ms_left, 10) / 1000))
        self.lease = Lease(keys.lock, token, lease_ms)
        self._renewed_at = time.monotonic()
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._keep_alive, args=(keys, self.lease, stop), name=f"lease:{keys.stream}", daemon=True
        )
        heartbeat.start()
        try:
            yield self.lease
        except BaseException:
            self._release(keys, stop, heartbeat, token, lease_ms, quiet=True)
            raise
        self._release(keys, stop, heartbeat, token, lease_ms, quiet=False)

    def _release(self, keys, stop, heartbeat, token: str, lease_ms: int, *, quiet: bool) -> None:
        """Stop the heartbeat and free the lock, once, without retries (an unreleased lock expires).

        A permission error is raised when the cycle itself succeeded: it would block the next cycle.
        """
        stop.set()
        heartbeat.join()
        self.lease = None
        try:
            faults.call(
                "lease", keys.stream,
                lambda: self._script("lease")(keys=[keys.lock], args=["release", token, lease_ms]),
                delays=(),
                source=script_source("lease"),
            )  # fmt: skip
        except Exception as exc:
            if not quiet and isinstance(exc, RedisPermissionError):
                raise  # the lock would stay and block the next cycles: an ACL to fix, not a fault
            self.log.warning(
                "Stream %s: lock %s not released (%s); it expires on its own", keys.stream, keys.lock, exc
            )

    def _keep_alive(self, keys: StreamKeys, lease: Lease, stop: threading.Event) -> None:
        """Renew the lease every third of it while the cycle runs (slow queries, slow first batch)."""
        script = self._script("lease")
        while not stop.wait(lease.lease_ms / 3000):
            try:
                if int(script(keys=[keys.lock], args=["renew", lease.token, lease.lease_ms])) != 1:
                    return  # lost: the next fenced call fails the cycle with a clear error
            except Exception as exc:  # Redis unreachable: the cycle's own calls retry and report it
                self.log.debug("Stream %s: lease renewal failed: %s", keys.stream, exc)

    def renew(self, keys: StreamKeys) -> None:
        """Extend the lease before a batch, unless renewed in the last sixth of it; fail fast when lost.

        Not a round trip per batch: the fenced scripts refuse a lost lease's writes anyway.
        """
        if self.lease is None:
            return
        started = time.monotonic()
        if started - self._renewed_at < self.lease.lease_ms / 1000 * RENEW_AFTER:
            return
        ok = self._run("lease", keys, [keys.lock], ["renew", self.lease.token, self.lease.lease_ms])
        if int(ok) != 1:
            raise faults.permanent_error("renew", keys.stream, ResponseError(faults.LOCK_LOST))
        self._renewed_at = started

    def emit(
        self,
        keys: StreamKeys,
        variant: str,
        maxlen: int | None,
        messages: Sequence[Message],
        *,
        track_keys: bool = False,
        script: str = "emit",
        precheck: bool = False,
    ) -> EmitResult:
        """One script call for the whole batch: dedup against ``seen``, then XADD what is new.

        ``script="delete"`` sends the batch as soft-delete tombstones (``op=delete``) instead.
        ``precheck`` first drops the rows ``seen`` already holds (one read-only round trip), so a
        window of mostly unchanged rows sends no payloads; the script still checks what is left.
        """
        if not messages:
            return EmitResult(0, 0)
        self.renew(keys)  # before the precheck too: a window of duplicates must keep the lease
        skipped = 0
        if precheck:
            fresh = self.unseen(keys, messages)
            skipped, messages = len(messages) - len(fresh), fresh
            if not messages:
                return EmitResult(0, skipped)
        args: list[Any] = [variant, maxlen or 0]
        args.extend(chain.from_iterable(messages))  # pkey, epoch, digest, payload per row
        script_keys = [keys.stream, keys.seen, keys.digest] + ([keys.keys] if track_keys else [])
        emitted, duplicates = self._run(script, keys, script_keys, args)
        return EmitResult(int(emitted), int(duplicates) + skipped)

    def unseen(self, keys: StreamKeys, messages: Sequence[Message]) -> Sequence[Message]:
        """The messages the emit script would append now: only a filter, the script decides atomically.

        Compares as the script does (epochs as doubles); a batch that repeats a pkey is kept whole,
        since the script compares a repeat with the version just before it.
        """
        pkeys = [m.pkey for m in messages]
        if len(set(pkeys)) != len(pkeys):
            return messages
        client = self.redis or self.get_conn()  # get_conn re-reads the connection

        def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.zmscore(keys.seen, pkeys)
            pipe.hmget(keys.digest, pkeys)
            return pipe.execute()

        scores, digests = faults.call("precheck", keys.stream, read)
        return [
            m
            for m, score, stored in zip(messages, scores, digests, strict=True)
            if score is None
            or (epoch := float(m.epoch_us)) > score
            or (epoch == score and stored != m.digest)
        ]

    def read_state(self, keys: StreamKeys) -> StreamState:
        raw = faults.call("read_state", keys.stream, lambda: self.get_conn().hgetall(keys.state))
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        watermark = fields.get("watermark")
        return StreamState(int(watermark) if watermark else None, fields)

    def commit(
        self,
        keys: StreamKeys,
        watermark_us: int | None,
        lookback_us: int,
        figures: Mapping[str, Any],
    ) -> int | None:
        """Move the watermark forward (never back), record the cycle, then trim ``seen``."""
        args: list[Any] = ["" if watermark_us is None else watermark_us]
        for field, value in figures.items():
            args += (field, "" if value is None else str(value))
        committed = self._run("commit", keys, [keys.state], args)
        committed_us = int(committed) if committed else None
        if committed_us is not None:
            self.trim(keys, trim_cutoff(committed_us, lookback_us))
        return committed_us

    def trim(self, keys: StreamKeys, cutoff_us: int, chunk: int = TRIM_CHUNK) -> int:
        """Remove ``seen`` members scored below cutoff, ``chunk`` per call so Redis never stalls."""
        removed = 0
        while True:
            n = int(self._run("trim", keys, [keys.seen, keys.digest], [cutoff_us, chunk]))
            removed += n
            if n < chunk:
                return removed

    def save_fields(self, keys: StreamKeys, fields: Mapping[str, Any]) -> None:
        """Record progress (the snapshot's cursor) in ``<tag>:state`` without touching the watermark."""
        mapping = {k: str(v) for k, v in fields.items()}
        faults.call("save_fields", keys.stream, lambda: self.get_conn().hset(keys.state, mapping=mapping))

    def drop_fields(self, keys: StreamKeys, *names: str) -> None:
        faults.call("drop_fields", keys.stream, lambda: self.get_conn().hdel(keys.state, *names))

    def mark_keys(self, keys: StreamKeys, pkeys: Sequence[str], at_us: int) -> None:
        """Reconcile: the tracked keys found in the source are known present at ``at_us``."""
        if pkeys:
            mapping = dict.fromkeys(pkeys, at_us)
            client = self.get_conn()
            faults.call("mark_keys", keys.stream, lambda: client.zadd(keys.keys, mapping, xx=True, gt=True))

    def sweep(
        self, keys: StreamKeys, variant: str, maxlen: int | None, cutoff_us: int, chunk: int = TRIM_CHUNK
    ) -> int:
        """Reconcile: one tombstone per tracked key not known present since the cutoff, in chunks."""
        swept = 0
        script_keys = [keys.stream, keys.seen, keys.digest, keys.keys]
        while True:
            n = int(self._run("sweep", keys, script_keys, [variant, maxlen or 0, cutoff_us, chunk]))
            swept += n
            if n < chunk:
                return swept
