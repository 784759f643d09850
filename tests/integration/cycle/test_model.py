"""The model-based proof of exactly-once per version: 200 seeded histories on the real servers.

Thousands: ``.venv/bin/python -m tests.integration.cycle.model --histories 5000 --seed 1``.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.conftest import set_connection
from tests.integration.cycle.model import AOF, PG_CONN, Simulator, install, model_workdir
from tests.integration.redis_servers import RedisServer

pytestmark = pytest.mark.integration

HISTORIES = 200
DEAD_LETTER_HISTORIES = 100


@pytest.fixture
def model_redis():
    workdir = model_workdir()
    server = RedisServer(workdir, *AOF).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_200_histories_stream_equals_the_model(model_redis, monkeypatch, capsys):
    set_connection(monkeypatch, "model_redis", model_redis.connection())
    set_connection(monkeypatch, "model_pg", PG_CONN)
    install(monkeypatch.setattr)
    sim = Simulator(model_redis, "model_redis", "model_pg", restart_rate=0.004)
    try:
        for hist in range(HISTORIES):
            sim.history(seed=20261126, hist=hist)
    finally:
        sim.close()
    figures = sim.figures.as_dict()
    with capsys.disabled():
        print("\nmodel-based histories:", json.dumps(figures))
    assert figures["histories"] == HISTORIES
    assert figures["mismatched_histories"] == []
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["versions_checked"] > 2000
    # the faults really happened, each kind many times
    for kind in ("crash_before_emit", "crash_after_emit", "crash_before_commit", "crash_after_commit"):
        assert figures["faults"].get(kind, 0) >= 10, figures
    assert figures["faults"].get("script_flush", 0) >= 10, figures


def test_histories_with_bad_rows_dead_letter_each_bad_version_once(model_redis, monkeypatch, capsys):
    """on_bad_row="dead_letter": bad versions (a NULL key or epoch) among the writes, the same faults;
    every good version is in the stream once, every bad version in the dead stream once, in order."""
    set_connection(monkeypatch, "model_redis", model_redis.connection())
    set_connection(monkeypatch, "model_pg", PG_CONN)
    install(monkeypatch.setattr)
    sim = Simulator(model_redis, "model_redis", "model_pg", restart_rate=0.004, dead_letter=True)
    try:
        for hist in range(DEAD_LETTER_HISTORIES):
            sim.history(seed=20261204, hist=hist)
    finally:
        sim.close()
    figures = sim.figures.as_dict()
    with capsys.disabled():
        print("\nmodel-based histories with dead letters:", json.dumps(figures))
    assert figures["mismatched_histories"] == []
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["dead_lost"] == 0 and figures["dead_duplicated"] == 0
    assert figures["versions_checked"] > 800 and figures["dead_letters_checked"] > 80
    for kind in ("crash_before_emit", "crash_after_emit", "crash_before_commit", "crash_after_commit"):
        assert figures["faults"].get(kind, 0) >= 5, figures


def test_long_transactions_outliving_lookback_lose_and_duplicate_nothing(model_redis, monkeypatch):
    """Real time, database-stamped rows: transactions held open across cycles for many lookbacks,
    cycles failing at random points; the transaction guard keeps every committed version."""
    from tests.integration.cycle.model import GuardSimulator

    set_connection(monkeypatch, "model_redis", model_redis.connection())
    set_connection(monkeypatch, "model_pg", PG_CONN)
    install(monkeypatch.setattr)
    sim = GuardSimulator(model_redis, "model_redis", "model_pg")
    try:
        for hist in range(8):
            sim.history(seed=20261203, hist=hist)
    finally:
        sim.close()
    figures = sim.figures.as_dict()
    assert figures["mismatched_histories"] == [] and figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["versions_checked"] > 30
    assert sim.held_longer_than_lookback >= 8  # the transactions really outlived lookback
    assert figures["faults_injected"] >= 5
