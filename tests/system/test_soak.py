"""A short soak on a real Airflow with CeleryExecutor, two workers and every kind of fault (docs/soak.md).

About three minutes: the deployment starts (about 1.5 min on this machine), writers and faults run for
``SOAK_SECONDS``, the streams drain, and every stream must equal the writers' log.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.system.soak import FAULT_KINDS, run_soak

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("DBSTREAM_SOAK_SECONDS", "75"))


def test_streams_equal_the_writers_log_through_worker_kills_failover_and_redis_restarts() -> None:
    figures = run_soak(duration=SOAK_SECONDS, fault_every=(6.0, 10.0))
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
    # The failover lost the primary's last writes (the replica lagged): the stream itself is whole again
    # (checked above), and a consumer that had read the lost entries reads those versions twice.
    failover = next(f for f in figures["fault_log"] if f["kind"] == "failover")
    assert failover["unreplicated_bytes"] > 0
    assert figures["consumer_never_read"] == 0
