"""The trigger's serialized form (what the triggerer stores and re-creates it from) and its batch bound."""

from __future__ import annotations

from collections import deque
from datetime import timedelta

import pytest
from airflow.sdk import Asset, AssetWatcher
from airflow.serialization.serialized_objects import BaseSerialization
from airflow.triggers.base import BaseEventTrigger

from airflow_dbstream.triggers.redis_stream import RedisStreamTrigger, entry_size, take_batch


def test_serialize_round_trips_through_airflows_serialization():
    trigger = RedisStreamTrigger(
        "customers", "crm", consumer="watcher-1", redis_conn_id="target", count=7, max_bytes=4096,
        min_idle=timedelta(minutes=2), block=timedelta(seconds=3), start_id="$",
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_dbstream.triggers.redis_stream.RedisStreamTrigger"
    stored = BaseSerialization.deserialize(BaseSerialization.serialize(kwargs))  # as the triggerer keeps it
    again = RedisStreamTrigger(**stored)
    assert again.serialize() == (classpath, kwargs)
    assert (again.min_idle, again.block, again.consumer, again.start_id) == (120.0, 3.0, "watcher-1", "$")


def test_min_idle_none_round_trips_and_the_same_arguments_hash_alike():
    one = RedisStreamTrigger("s", "g", min_idle=None)
    assert RedisStreamTrigger(**one.serialize()[1]).min_idle is None
    # an AssetWatcher is found again by this hash when the DAG is parsed again
    assert BaseEventTrigger.hash(*one.serialize()) == BaseEventTrigger.hash(
        *RedisStreamTrigger("s", "g", min_idle=None).serialize()
    )
    assert BaseEventTrigger.hash(*one.serialize()) != BaseEventTrigger.hash(
        *RedisStreamTrigger("s", "g", "other", min_idle=None).serialize()
    )


def test_it_is_an_event_trigger_an_asset_watcher_accepts():
    watcher = AssetWatcher(name="customers_watcher", trigger=RedisStreamTrigger("customers", "crm"))
    assert Asset("customers", watchers=[watcher]).watchers == [watcher]


@pytest.mark.parametrize("bad", [{"count": 0}, {"max_bytes": 0}])
def test_a_batch_bound_below_one_is_refused_naming_the_stream(bad):
    with pytest.raises(ValueError, match="RedisStreamTrigger on 'customers': count and max_bytes"):
        RedisStreamTrigger("customers", "crm", **bad)


def entries(*sizes: int) -> deque:
    return deque((f"{i}-0", {"p": "x" * (size - 1)}) for i, size in enumerate(sizes))


def test_take_batch_stops_at_count_then_at_max_bytes():
    buffer = entries(10, 10, 10, 10, 10)
    assert [e[0] for e in take_batch(buffer, 3, 1000)] == ["0-0", "1-0", "2-0"]
    assert len(buffer) == 2
    buffer = entries(10, 10, 10, 10)
    assert [e[0] for e in take_batch(buffer, 100, 25)] == ["0-0", "1-0"]  # a third would make 30


def test_an_entry_larger_than_max_bytes_goes_alone_and_the_next_one_waits():
    buffer = entries(500, 10)
    assert [e[0] for e in take_batch(buffer, 100, 100)] == ["0-0"]
    assert [e[0] for e in take_batch(buffer, 100, 100)] == ["1-0"]


def test_entry_size_counts_utf8_bytes_of_names_and_values():
    assert entry_size(("1-0", {"pkey": "é"})) == 4 + 2
