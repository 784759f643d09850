import threading

import pytest

from airflow_dbstream.cycle.overlap import BackgroundEmitter, read_ahead
from airflow_dbstream.hooks.redis_stream import EmitResult


class Recorder:
    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.batches: list[tuple[list, bool]] = []
        self.fail_on, self.gate = fail_on, gate

    def __call__(self, messages, *, precheck):
        if self.gate is not None:
            self.gate.wait(5)
        if len(self.batches) == self.fail_on:
            raise ConnectionError("redis went away")
        self.batches.append((list(messages), precheck))
        new = sum(1 for m in messages if m >= 0)
        return EmitResult(new, len(messages) - new)


def test_batches_are_emitted_in_order_and_totals_returned():
    emit = Recorder()
    emitter = BackgroundEmitter(emit)
    for k in range(20):
        emitter.submit([k, k, -1])
    emitter.submit([])
    assert emitter.finish() == (40, 20, 0, None)
    assert [b[0][0] for b in emit.batches] == list(range(20))


def test_precheck_follows_the_last_batch():
    emit = Recorder()
    emitter = BackgroundEmitter(emit)
    for batch in ([-1, -1, 1], [1, 1, -1], [-1, -1], [1]):
        emitter.submit(batch)
    emitter.finish()
    assert [b[1] for b in emit.batches] == [True, True, False, True]


def test_an_emit_error_reaches_the_cycle_and_stops_emitting():
    emit = Recorder(fail_on=1)
    emitter = BackgroundEmitter(emit)
    with pytest.raises(ConnectionError, match="redis went away"):
        for k in range(50):
            emitter.submit([k])
        emitter.finish()
    emitter.abandon()
    assert [b[0] for b in emit.batches] == [[0]]


def test_abandon_emits_what_was_submitted_then_stops():
    gate = threading.Event()
    emit = Recorder(gate=gate)
    emitter = BackgroundEmitter(emit, depth=2)
    emitter.submit([1])
    emitter.submit([2])
    gate.set()
    emitter.abandon()
    assert [b[0] for b in emit.batches] == [[1], [2]]


def _source(n, fail_at=None, closed=None):
    try:
        for k in range(n):
            if k == fail_at:
                raise LookupError("cursor lost")
            yield k
    finally:
        if closed is not None:
            closed.append(threading.current_thread().name)


def test_read_ahead_yields_everything_in_order_and_closes_on_its_thread():
    closed = []
    assert list(read_ahead(_source(100, closed=closed))) == list(range(100))
    assert closed == ["dbstream-read"]


def test_read_ahead_raises_the_source_error():
    closed = []
    got = []
    with pytest.raises(LookupError, match="cursor lost"):
        for k in read_ahead(_source(10, fail_at=3, closed=closed)):
            got.append(k)
    assert got == [0, 1, 2] and closed == ["dbstream-read"]


def test_closing_read_ahead_early_stops_the_thread_and_closes_the_source():
    closed = []
    batches = read_ahead(_source(10**6, closed=closed), depth=2)
    assert next(batches) == 0
    batches.close()
    assert closed == ["dbstream-read"]
    assert not [t for t in threading.enumerate() if t.name == "dbstream-read"]
