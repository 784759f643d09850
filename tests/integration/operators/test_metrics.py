"""Each cycle's figures reach Airflow's metrics: StatsD switched on, a UDP listener of the test's own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import PG_CONN, REDIS_CONN

pytestmark = pytest.mark.integration

# A worker as Airflow's task runner sets it up: stats initialized from [metrics], then the operator runs.
WORKER = textwrap.dedent(
    """
    import json
    import sys
    from datetime import timedelta
    from airflow.sdk._shared.observability.metrics import stats
    from airflow.sdk.observability.metrics import stats_utils
    from airflow_dbstream.operators.sql_to_redis_stream import SqlToRedisStreamOperator

    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    SqlToRedisStreamOperator(
        task_id="metrics", sql_conn_id="pg_metrics", redis_conn_id="redis_metrics", sql=sys.argv[1],
        stream=sys.argv[2], pkey_column="id", epoch_column="updated_at", lookback=timedelta(minutes=5),
        variant="v1", **json.loads(sys.argv[3]),
    ).execute(context={})
    """
)


def _metrics(pg_table, stream, sql: str, **arguments) -> list[str]:
    """The StatsD packets a worker's cycle sends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    env = {
        **os.environ,
        "AIRFLOW_CONN_PG_METRICS": json.dumps(PG_CONN),
        "AIRFLOW_CONN_REDIS_METRICS": json.dumps(REDIS_CONN),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",  # tags on the wire, as InfluxDB reads them
    }
    done = subprocess.run([sys.executable, "-c", WORKER, sql, stream, json.dumps(arguments)], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    packets = []
    try:
        while True:
            packets.extend(listener.recv(65535).decode().splitlines())
    except TimeoutError:
        pass
    finally:
        listener.close()
    return [p for p in packets if p.startswith("airflow.dbstream.")]


def test_a_cycle_sends_its_counters_gauges_and_timer_tagged_with_the_stream(pg_table, stream):
    pg_table.insert([(i, f"c{i}", pg_table.now() - timedelta(seconds=i)) for i in range(1, 8)])
    ours = _metrics(pg_table, stream, pg_table.sql)
    tag = f"stream={stream.replace(':', '_')}"  # test:<hex> -> test_<hex>: StatsD's characters
    assert f"airflow.dbstream.rows_read,{tag}:7|c" in ours, ours
    assert f"airflow.dbstream.emitted,{tag}:7|c" in ours
    assert f"airflow.dbstream.duplicates,{tag}:0|c" in ours
    assert any(p.startswith(f"airflow.dbstream.lag_seconds,{tag}:") and p.endswith("|g") for p in ours)
    assert any(p.startswith(f"airflow.dbstream.freshness_seconds,{tag}:") for p in ours)
    assert any(p.startswith(f"airflow.dbstream.cycle_duration,{tag}:") and p.endswith("|ms") for p in ours)
    assert f"airflow.dbstream.dead_lettered,{tag}:0|c" in ours
    assert not any(p.startswith("airflow.dbstream.dead_length") for p in ours)  # fail: no dead stream


def test_a_dead_lettering_cycle_counts_its_dead_letters_and_the_dead_streams_length(pg_table, stream):
    pg_table.insert([(i, "bad" if i in (2, 3) else f"c{i}", pg_table.now()) for i in range(1, 6)])
    sql = pg_table.sql.replace("SELECT id,", "SELECT CASE WHEN name = 'bad' THEN NULL ELSE id END AS id,")
    ours = _metrics(pg_table, stream, sql, on_bad_row="dead_letter")
    tag = f"stream={stream.replace(':', '_')}"
    assert f"airflow.dbstream.emitted,{tag}:3|c" in ours, ours
    assert f"airflow.dbstream.dead_lettered,{tag}:2|c" in ours
    assert f"airflow.dbstream.dead_length,{tag}:2|g" in ours
