"""The shared cycle scenarios on a real 3-master Redis Cluster, through the connection's cluster extra."""

from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from airflow_dbstream.core.keys import StreamKeys
from tests.integration.conftest import PostgresTable, set_connection
from tests.integration.hooks.scenarios import SCENARIOS, Target, run_all

pytestmark = pytest.mark.integration


def _stream_on_each_master(cluster) -> list[str]:
    """One hash-tagged stream per master, so the scenarios run in different slots on every node."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.nodes):
        name = f"rel:{{{uuid.uuid4().hex[:8]}}}"
        found.setdefault(cluster.node_of(name), name)
    return [found[i] for i in sorted(found)]


def test_scenarios_on_three_masters_without_crossslot(redis_cluster, monkeypatch):
    set_connection(monkeypatch, "redis_cluster", redis_cluster.connection())
    target = Target(client=redis_cluster.client(), conn_id="redis_cluster")
    streams = _stream_on_each_master(redis_cluster)
    untagged = f"plain{uuid.uuid4().hex[:8]}"  # companions go to {<stream>}: same slot as the stream
    streams.append(untagged)

    ran = run_all(lambda: PostgresTable(monkeypatch), target, streams)

    assert ran == len(SCENARIOS) * 4
    used_nodes = {redis_cluster.node_of(s) for s in streams[:3]}
    assert used_nodes == {0, 1, 2}
    for scenario in SCENARIOS:
        name = f"{untagged}:{scenario.__name__[:12]}"
        keys = StreamKeys.for_stream(name)
        all_keys = (keys.stream, keys.seen, keys.digest, keys.state, keys.lock, keys.dead, keys.dead_seen)
        assert len({key_slot(k.encode()) for k in all_keys}) == 1
        assert target.client.xlen(name) > 0
    # every master holds the scripts it needed (loaded there on NOSCRIPT, also after SCRIPT FLUSH)
    for node in redis_cluster.nodes:
        assert node.admin().dbsize() > 0


def test_least_privilege_user_on_the_cluster(redis_cluster, monkeypatch):
    """The ACL of docs/reliability.md with its cluster additions, set on every master, runs the scenarios."""
    from airflow_dbstream.core.acl import acl_rules

    password = uuid.uuid4().hex
    for node in redis_cluster.nodes:
        node.admin().execute_command(
            "ACL", "SETUSER", "dbstream", "on", f">{password}", *acl_rules("crm:*", cluster=True)
        )
    spec = redis_cluster.connection() | {"login": "dbstream", "password": password}
    set_connection(monkeypatch, "redis_cluster_acl", spec)
    target = Target(client=redis_cluster.client(), conn_id="redis_cluster_acl")
    streams = [f"crm:{{{uuid.uuid4().hex[:8]}}}", f"crm:x{uuid.uuid4().hex[:6]}"]
    assert run_all(lambda: PostgresTable(monkeypatch), target, streams) == 2 * len(SCENARIOS)
