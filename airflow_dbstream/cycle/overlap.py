"""Overlap a cycle's reading, encoding and Redis writes: batches are read ahead and emitted on threads.

While Redis runs the emit script for batch k (the calling thread waits on the socket, without the
GIL), the cycle already fetches and encodes batch k + 1. One emitting thread and a FIFO queue keep
the batches in the order they were read, so per-key epoch order and the script's dedup are as in a
sequential cycle. At most ``depth`` batches wait, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sized
from typing import Any, TypeVar

_DONE = object()
T = TypeVar("T")


class BackgroundEmitter:
    """Sends submitted batches on a background thread; ``finish`` returns the totals or raises its error.

    A window of mostly unchanged rows is checked against ``seen`` before its payloads are sent
    (``precheck``): the emitter turns it on while the last batch was mostly duplicates.
    """

    def __init__(self, send: Callable[..., Any], depth: int = 2) -> None:
        self._send = send
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.emitted = self.duplicates = self.deletes = self.dead_lettered = 0
        self.lowest_epoch_us: int | None = None
        self._precheck = True  # the first batch tells whether the window is mostly known already
        self._thread = threading.Thread(target=self._run, name="dbstream-emit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _DONE:
            if self._error is not None:
                continue  # drain without emitting: the cycle has failed
            try:
                result = self._send(batch, precheck=self._precheck)
            except BaseException as exc:
                self._error = exc
                continue
            self.emitted += result.emitted
            self.duplicates += result.duplicates
            self.deletes += getattr(result, "deletes", 0)
            self.dead_lettered += getattr(result, "dead_lettered", 0)
            low = getattr(result, "lowest_epoch_us", None)
            if low is not None and (self.lowest_epoch_us is None or low < self.lowest_epoch_us):
                self.lowest_epoch_us = low
            self._precheck = result.duplicates * 2 > len(batch)

    @property
    def prechecking(self) -> bool:
        """Whether the next batch will be prechecked (the last one sent was mostly duplicates)."""
        return self._precheck

    def submit(self, batch: Sized) -> None:
        """Queue a batch (waits while ``depth`` batches are queued); raises the emitter's error, if any."""
        self._raise()
        if len(batch):
            self._queue.put(batch)

    def finish(self) -> tuple[int, int, int, int | None]:
        """Wait until every submitted batch is sent; return (emitted, duplicates, deletes, lowest epoch)."""
        self._queue.put(_DONE)
        self._thread.join()
        self._raise()
        return self.emitted, self.duplicates, self.deletes, self.lowest_epoch_us

    def abandon(self) -> None:
        """The cycle failed on its side: emit what was already submitted (as a sequential cycle had), stop."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def read_ahead(batches: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield what ``batches`` yields, fetching the next item on a thread while the caller works on this one.

    The source is iterated, and closed, on that one thread only; close this generator (``closing``)
    so a failing caller stops the thread before the connection is closed.
    """
    items: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        outcome: tuple[bool, Any] = (False, None)
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:
            outcome = (False, exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                items.put(outcome, timeout=0.05)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=run, name="dbstream-read", daemon=True)
    thread.start()
    try:
        while True:
            fetched, item = items.get()
            if fetched:
                yield item
            elif item is None:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()
