"""The stream's cycle lock: one holder at a time, a lease kept by a heartbeat, a token that fences writes.

A cycle, a replay or a reset holds the lease for its whole run and passes it to every write it makes
(``RedisStreamHook`` runs the fenced scripts with it), so a worker that froze past its lease and woke
up again writes nothing: the scripts check the token against ``<tag>:lock`` atomically.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from redis.exceptions import ResponseError

from airflow_dbstream.core.errors import RedisPermissionError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.hooks import faults

if TYPE_CHECKING:
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook

RENEW_AFTER = 1 / 6  # of the lease: a batch renews it when this much has passed since the last renewal
log = logging.getLogger(__name__)


class LockBusy(Exception):
    """Another cycle holds the stream's lock (``holder`` names it) for ``ms_left`` more ms."""

    def __init__(self, holder: str, ms_left: int) -> None:
        super().__init__(holder, ms_left)
        self.holder, self.ms_left = holder, ms_left


class Lease:
    """This run's hold on ``<tag>:lock``: the token the fenced scripts check, and its renewals."""

    def __init__(self, redis: RedisStreamHook, keys: StreamKeys, token: str, lease_ms: int) -> None:
        self.redis, self.keys = redis, keys
        self.lock, self.token, self.lease_ms = keys.lock, token, lease_ms
        self.renewed_at = time.monotonic()

    def _call(self, op: str) -> int:
        return int(self.redis.run_script("lease", self.keys, [self.lock], [op, self.token, self.lease_ms]))

    def renew_if_due(self) -> None:
        """Extend the lease before a batch, unless renewed in the last sixth of it; fail fast when lost.

        Not a round trip per batch: the fenced scripts refuse a lost lease's writes anyway.
        """
        started = time.monotonic()
        if started - self.renewed_at < self.lease_ms / 1000 * RENEW_AFTER:
            return
        if self._call("renew") != 1:
            raise faults.permanent_error("renew", self.keys.stream, ResponseError(faults.LOCK_LOST))
        self.renewed_at = started

    def keep_alive(self, stop: threading.Event) -> None:
        """Renew the lease every third of it while the run goes on (slow queries, a slow first batch)."""
        while not stop.wait(self.lease_ms / 3000):
            try:
                if self._call("renew") != 1:
                    return  # lost: the next fenced call fails the cycle with a clear error
            except Exception as exc:  # Redis unreachable: the cycle's own calls retry and report it
                log.debug("Stream %s: lease renewal failed: %s", self.keys.stream, exc)

    def release(self, *, quiet: bool) -> None:
        """Free the lock once; a failure leaves it to expire on its own.

        A permission error is raised when the run itself succeeded: it would block the next cycle.
        """
        try:
            self._call("release")
        except Exception as exc:
            if not quiet and isinstance(exc, RedisPermissionError):
                raise  # the lock would stay and block the next cycles: an ACL to fix, not a fault
            log.warning(
                "Stream %s: lock %s not released (%s); it expires on its own",
                self.keys.stream,
                self.lock,
                exc,
            )


def _acquire(redis: RedisStreamHook, keys: StreamKeys, lease_ms: int, wait_s: float) -> Lease:
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        taken = redis.run_script("lease", keys, [keys.lock], ["acquire", token, lease_ms])
        if int(taken[0]) == 1:
            return Lease(redis, keys, token, lease_ms)
        holder, ms_left = taken[1].decode(), int(taken[2])
        if time.monotonic() >= deadline:
            raise LockBusy(holder, ms_left)
        if not waiting:
            waiting = True
            log.info(
                "Stream %s: another cycle (%s) holds %s for %.1f s more; waiting up to %.1f s",
                keys.stream,
                holder,
                keys.lock,
                ms_left / 1000,
                wait_s,
            )
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01), max(ms_left, 10) / 1000))


@contextmanager
def hold(redis: RedisStreamHook, keys: StreamKeys, lease_ms: int, wait_s: float = 0.0) -> Iterator[Lease]:
    """
    Hold ``<tag>:lock`` for one run; raises LockBusy when another holder keeps it past wait_s.

    The lease is renewed by a heartbeat every third of the lease, and before a batch when a sixth
    of it has passed since the last renewal, so only a worker that is dead or frozen as a whole
    loses it; the fenced scripts then refuse its writes.
    """
    lease = _acquire(redis, keys, lease_ms, wait_s)
    stop = threading.Event()
    heartbeat = threading.Thread(
        target=lease.keep_alive, args=(stop,), name=f"lease:{keys.stream}", daemon=True
    )
    heartbeat.start()
    failed = True
    try:
        yield lease
        failed = False
    finally:
        stop.set()
        heartbeat.join(timeout=lease_ms / 3000)  # a renewal stuck in retries must not hold the run up
        lease.release(quiet=failed)
