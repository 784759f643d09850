"""A short soak on a real Airflow with CeleryExecutor, two workers and every kind of fault (docs/soak.md).

About four to five minutes on this (shared, 2-core) machine: the deployment starts (about 1.5 min), the
writers and faults run for ``SOAK_SECONDS`` (90), the streams drain, and every stream must equal the
writers' log.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.system.soak import FAULT_KINDS, run_soak

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("DBSTREAM_SOAK_SECONDS", "90"))


def test_streams_equal_the_writers_log_through_worker_kills_failover_and_redis_restarts() -> None:
    figures = run_soak(duration=SOAK_SECONDS, fault_every=(2.0, 5.0))
    print(json.dumps(figures, indent=2, default=str))  # shown with -s, and on failure
    assert figures["streams"] >= 20
    assert figures["postgres_streams"] and figures["mariadb_streams"]
    assert figures["streams_on_primary_with_replica"]
    assert set(figures["faults"]) == set(FAULT_KINDS), figures["fault_log"]
    assert figures["first_difference"] is None, figures["first_difference"]
    wrong = ("lost", "duplicated", "out_of_order", "phantom", "wrong_op")
    assert {k: figures[k] for k in wrong} == dict.fromkeys(wrong, 0)
    assert figures["versions_in_stream"] > 500
    assert figures["soft_deletes"] > 0 and figures["hard_deletes"] > 0
    assert figures["cycles_run"] > 40
    # The failover's own effect (docs/soak.md): the replica lagged, so the primary's last appends were
    # lost with it; the next cycles appended the rows' current versions again (the check above finds
    # each once), and a version the row had left by then is gone ("rolled_back"): never more than the
    # entries the failovers lost. A consumer following the streams missed nothing still in them.
    failovers = [f for f in figures["fault_log"] if f["kind"] == "failover"]
    assert sum(f["entries_lost_at_promotion"] for f in failovers) > 0, failovers
    assert figures["rolled_back"] <= sum(f["entries_lost_at_promotion"] for f in failovers)
    assert figures["consumer_never_read"] == 0
