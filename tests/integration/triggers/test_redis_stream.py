"""RedisStreamTrigger.run() for real (asyncio) on the real Redis, a cluster and TLS; the ack operator's XACK.

Each test reads its own stream (the `stream` fixture) with its own group, so tests running at once on
the shared server never see each other's entries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import pytest

from airflow_dbstream.operators.redis_stream_ack import RedisStreamAckOperator, messages_of
from airflow_dbstream.triggers.redis_stream import RedisStreamTrigger
from tests.integration.conftest import set_connection
from tests.integration.redis_servers import TlsFiles

pytestmark = pytest.mark.integration


def trigger(stream: str, **kwargs) -> RedisStreamTrigger:
    kwargs = {"group": "g", "consumer": "watcher", "redis_conn_id": "redis_test", "block": 0.2, **kwargs}
    return RedisStreamTrigger(stream, **kwargs)


def events(t: RedisStreamTrigger, n: int, timeout: float = 10.0) -> list[dict]:
    """The first ``n`` events the trigger fires (fewer if ``timeout`` passes first); then it is stopped,
    as the triggerer stops it: its generator closed, its client closed."""

    async def collect() -> list[dict]:
        got: list[dict] = []
        run = t.run()
        try:
            async with asyncio.timeout(timeout):
                async for event in run:
                    got.append(event.payload)
                    if len(got) == n:
                        break
        except TimeoutError:
            pass
        finally:
            await run.aclose()
        return got

    return asyncio.run(collect())


def add(client, stream: str, n: int, size: int = 10) -> list[str]:
    return [client.xadd(stream, {"pkey": str(i), "payload": "x" * size}).decode() for i in range(n)]


def pending_of(client, stream: str, group: str = "g") -> dict[str, str]:
    """Pending entry id -> the consumer holding it."""
    rows = client.xpending_range(stream, group, min="-", max="+", count=1000)
    return {r["message_id"].decode(): r["consumer"].decode() for r in rows}


def test_new_entries_fire_in_batches_of_count_with_ids_and_fields(redis_client, stream):
    ids = add(redis_client, stream, 5)
    fired = events(trigger(stream, count=3), 2)
    assert [e["ids"] for e in fired] == [ids[:3], ids[3:]]
    first = fired[0]
    assert first["stream"] == stream and first["group"] == "g" and first["redis_conn_id"] == "redis_test"
    assert first["messages"][0] == {"id": ids[0], "fields": {"pkey": "0", "payload": "x" * 10}}
    # fired, not acked: all five wait in the group's pending list for the ack task
    assert pending_of(redis_client, stream) == dict.fromkeys(ids, "watcher")


def test_an_event_holds_at_most_max_bytes_and_a_larger_entry_goes_alone(redis_client, stream):
    small = add(redis_client, stream, 4, size=90)  # 4 + 1 + 7 + 90 = 102 bytes each
    big = add(redis_client, stream, 1, size=5000)
    fired = events(trigger(stream, count=100, max_bytes=250), 3)
    assert [e["ids"] for e in fired] == [small[:2], small[2:], big]


def test_an_empty_stream_fires_nothing(redis_client, stream):
    started = time.monotonic()
    assert events(trigger(stream), 1, timeout=1.5) == []
    assert time.monotonic() - started >= 1.5
    assert redis_client.xinfo_groups(stream)[0]["name"] == b"g"  # the group was made, the stream with it


def test_the_group_starts_where_start_id_says(redis_client, stream):
    add(redis_client, stream, 2)
    assert events(trigger(stream, group="late", start_id="$"), 1, timeout=1.0) == []
    assert [len(e["ids"]) for e in events(trigger(stream, group="all", start_id="0"), 1)] == [2]


def test_a_dead_consumers_pending_entries_are_reclaimed_after_min_idle(redis_client, stream):
    ids = add(redis_client, stream, 3)
    redis_client.xgroup_create(stream, "g", id="0")
    redis_client.xreadgroup("g", "dead", {stream: ">"})  # delivered to a consumer that then died
    # younger than min_idle: left to their consumer
    assert events(trigger(stream, min_idle=30), 1, timeout=1.0) == []
    time.sleep(0.6)
    fired = events(trigger(stream, min_idle=0.5), 1)
    assert [e["ids"] for e in fired] == [ids]
    assert pending_of(redis_client, stream) == dict.fromkeys(ids, "watcher")
    # with reclaiming off they would have stayed with the dead consumer
    redis_client.xgroup_create(stream, "g2", id="0")
    redis_client.xreadgroup("g2", "dead", {stream: ">"})
    time.sleep(0.6)
    assert events(trigger(stream, group="g2", min_idle=None), 1, timeout=1.0) == []


def test_a_restarted_trigger_fires_again_what_was_not_acked_and_never_what_was(redis_client, stream):
    ids = add(redis_client, stream, 6, size=90)
    first = trigger(stream, count=4, max_bytes=250)  # reads 4, fires 2, keeps 2 read ahead
    assert [e["ids"] for e in events(first, 2)] == [ids[:2], ids[2:4]]
    redis_client.xack(stream, "g", ids[0], ids[1], ids[2])  # the runs of ids 0-2 finished; 3's did not
    # the triggerer restarts: a new instance from the serialized kwargs, the same consumer
    classpath, kwargs = first.serialize()
    assert classpath == "airflow_dbstream.triggers.redis_stream.RedisStreamTrigger"
    again = RedisStreamTrigger(**kwargs)
    fired = [e["ids"] for e in events(again, 2)]
    assert fired == [[ids[3]], ids[4:]]  # its own pending first (3 unacked), then the new ones
    # once more, nothing acked meanwhile: the same unacked entries again, in order, nothing acked
    fired = [e["ids"] for e in events(RedisStreamTrigger(**kwargs), 2)]
    assert fired == [ids[3:5], ids[5:]]


def test_a_restart_fires_read_ahead_entries_it_never_fired(redis_client, stream):
    """Entries read into the buffer but not fired before a restart are in the pending list: not lost."""
    ids = add(redis_client, stream, 4, size=90)
    assert [e["ids"] for e in events(trigger(stream, count=4, max_bytes=250), 1)] == [ids[:2]]
    redis_client.xack(stream, "g", *ids[:2])
    assert [e["ids"] for e in events(trigger(stream, count=4, max_bytes=250), 1)] == [ids[2:]]


def test_trimmed_pending_entries_are_acked_with_a_warning_not_fired(redis_client, stream, capfd):
    ids = add(redis_client, stream, 3)
    redis_client.xgroup_create(stream, "g", id="0")
    redis_client.xreadgroup("g", "watcher", {stream: ">"})
    redis_client.xdel(stream, ids[0])
    fired = events(trigger(stream), 1)
    assert [e["ids"] for e in fired] == [ids[1:]]
    assert ids[0] not in pending_of(redis_client, stream)
    assert "trimmed from the stream before they were acked" in capfd.readouterr().out


def test_the_ack_operator_acks_the_ids_of_the_triggering_asset_events(redis_client, stream):
    ids = add(redis_client, stream, 5)
    first, second = events(trigger(stream, count=3), 2)
    # the run's context as Airflow builds it: asset -> its events, whose extra holds the trigger's payload
    context = {
        "triggering_asset_events": {
            "customers": [SimpleNamespace(extra={"from_trigger": True, "payload": first})],
            "alias": [SimpleNamespace(extra={"from_trigger": True, "payload": first})],
        }
    }
    result = RedisStreamAckOperator(task_id="ack").execute(context)
    assert result == {"acked": 3, "ids": 3, "events": 2}
    assert set(pending_of(redis_client, stream)) == set(ids[3:])
    # a sensor's output, passed in; acking again acks nothing more
    assert RedisStreamAckOperator(task_id="ack", event=[second, first]).execute({})["acked"] == 2
    assert pending_of(redis_client, stream) == {}


def test_the_ack_operator_without_an_event_says_where_it_belongs():
    with pytest.raises(ValueError, match="no RedisStreamTrigger event in triggering asset events"):
        RedisStreamAckOperator(task_id="ack").execute({"triggering_asset_events": {}})


def test_tls(own_redis, tmp_path, monkeypatch):
    server = own_redis(tls=TlsFiles(tmp_path / "tls"))
    set_connection(monkeypatch, "redis_tls", server.connection(ssl_check_hostname=True))
    admin = server.admin()
    entry = admin.xadd("tls:stream", {"pkey": "1"}).decode()
    fired = events(trigger("tls:stream", redis_conn_id="redis_tls"), 1)
    assert [e["ids"] for e in fired] == [[entry]]
    RedisStreamAckOperator(task_id="ack", event=fired[0]).execute({})
    assert admin.xpending("tls:stream", "g")["pending"] == 0


def test_cluster(redis_cluster, monkeypatch):
    set_connection(monkeypatch, "redis_cluster_test", redis_cluster.connection())
    client = redis_cluster.client()
    streams = ["{a}:orders", "{b}:orders", "{c}:orders"]  # on more than one master
    assert len({redis_cluster.node_of(s) for s in streams}) > 1
    for name in streams:
        entry = client.xadd(name, {"pkey": "1"}).decode()
        fired = events(trigger(name, redis_conn_id="redis_cluster_test"), 1)
        assert [e["ids"] for e in fired] == [[entry]], name
        assert RedisStreamAckOperator(task_id="ack", event=fired[0]).execute({})["acked"] == 1
        assert client.xpending(name, "g")["pending"] == 0


def test_fields_false_fires_ids_only_and_messages_of_reads_them(redis_client, stream):
    ids = add(redis_client, stream, 3)
    (event,) = events(trigger(stream, fields=False), 1)
    assert event["ids"] == ids and "messages" not in event
    context = {"triggering_asset_events": {"a": [SimpleNamespace(extra={"payload": event})]}}
    with pytest.raises(ValueError, match="carry ids only"):
        messages_of(context)
    messages = messages_of(context, redis_client)
    assert [m["id"] for m in messages] == ids and messages[0]["fields"]["payload"] == "x" * 10


def run_with(t: RedisStreamTrigger, meanwhile, timeout: float = 30.0) -> dict:
    """The trigger's first event, while ``meanwhile()`` runs in a thread once it is reading."""

    async def scenario() -> dict:
        run = t.run()
        first = asyncio.ensure_future(run.__anext__())
        try:
            await asyncio.sleep(0.5)  # the group is made, the trigger blocks in XREADGROUP
            await asyncio.to_thread(meanwhile)
            return (await asyncio.wait_for(first, timeout)).payload
        finally:
            first.cancel()
            await run.aclose()

    return asyncio.run(scenario())


def test_a_deleted_stream_gets_its_group_again_and_new_entries_still_fire(redis_client, stream, capfd):
    added: list[str] = []

    def delete_then_add() -> None:
        redis_client.delete(stream)
        added.extend(add(redis_client, stream, 1))

    event = run_with(trigger(stream), delete_then_add)
    assert event["ids"] == added
    assert "has no group g any more" in capfd.readouterr().out


def test_redis_killed_and_restarted_the_trigger_reconnects_and_fires(own_redis, monkeypatch):
    server = own_redis("--appendonly", "yes", "--appendfsync", "always")
    set_connection(monkeypatch, "redis_own", server.connection())
    added: list[str] = []

    def kill_restart_add() -> None:
        server.kill()
        time.sleep(1.5)
        server.start()
        added.extend(add(server.admin(), "own:stream", 1))

    event = run_with(trigger("own:stream", redis_conn_id="redis_own"), kill_restart_add)
    assert event["ids"] == added


def test_a_consumer_acl_user_reads_reclaims_and_acks_but_cannot_write(own_redis, monkeypatch):
    from airflow_dbstream.core.acl import consumer_acl_rules

    server = own_redis()
    admin = server.admin()
    password = "consumer-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", "reader", "on", f">{password}", *consumer_acl_rules("acl:*"))
    spec = server.connection() | {"login": "reader", "password": password}
    set_connection(monkeypatch, "redis_reader", spec)
    ids = add(admin, "acl:orders", 2)
    admin.xgroup_create("acl:orders", "g", id="0")
    admin.xreadgroup("g", "dead", {"acl:orders": ">"}, count=1)  # one pending on a dead consumer
    time.sleep(0.3)
    fired = events(trigger("acl:orders", redis_conn_id="redis_reader", min_idle=0.2, fields=False), 2)
    assert sorted(i for e in fired for i in e["ids"]) == ids
    context = {"triggering_asset_events": {"a": [SimpleNamespace(extra={"payload": e}) for e in fired]}}
    reader = server.admin(username="reader", password=password)
    assert [m["id"] for m in messages_of(context, reader)] == ids
    assert RedisStreamAckOperator(task_id="ack").execute(context)["acked"] == 2
    with pytest.raises(Exception, match="no permissions"):
        reader.xadd("acl:orders", {"x": "1"})


def test_what_a_run_never_acked_fires_again_after_min_idle_what_it_acked_never(redis_client, stream):
    """One trigger lifetime, as in a watcher: the run of the first event acks one entry and fails on the
    other, the second event's run acks its entry; the failed one is fired again by XAUTOCLAIM once
    pending 0.6 s, the acked ones never."""
    ids = add(redis_client, stream, 3)

    async def scenario() -> list[tuple[list[str], float]]:
        run = trigger(stream, count=2, min_idle=0.6).run()
        got: list[tuple[list[str], float]] = []
        try:
            async with asyncio.timeout(10):
                async for event in run:
                    got.append((event.payload["ids"], time.monotonic()))
                    if len(got) == 1:
                        await asyncio.to_thread(redis_client.xack, stream, "g", ids[1])
                    if len(got) == 2:
                        await asyncio.to_thread(redis_client.xack, stream, "g", ids[2])
                    if len(got) == 3:
                        break
        finally:
            await run.aclose()
        return got

    (first, t0), (second, _), (third, t2) = asyncio.run(scenario())
    assert (first, second, third) == (ids[:2], [ids[2]], [ids[0]])
    assert t2 - t0 >= 0.6
