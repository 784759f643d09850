"""The stream's Asset URI (canonical form, checks) and the extra of the events a run emits."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from airflow_dbstream.core.assets import (
    StreamAddress,
    address,
    alias_name,
    cycle_event,
    parse,
    reconcile_event,
    replay_event,
    sanitize_uri,
)


def canonical(uri: str) -> str:
    return urlunsplit(sanitize_uri(urlsplit(uri)))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis://redis.example.com:6379/0/customers", "redis://redis.example.com:6379/0/customers"),
        ("redis://Redis.Example.COM/customers", "redis://redis.example.com:6379/0/customers"),
        ("rediss://h:6380/2/orders", "redis://h:6380/2/orders"),
        ("redis://acl-user@h/3/orders", "redis://h:6379/3/orders"),
        ("redis://h/0/crm:{customers}", "redis://h:6379/0/crm:%7Bcustomers%7D"),
        ("redis://h/0/crm:%7Bcustomers%7D", "redis://h:6379/0/crm:%7Bcustomers%7D"),
        ("redis://h/0/a/b", "redis://h:6379/0/a%2Fb"),  # the rest of the path after the db is the key
        ("redis://h/a/b", "redis://h:6379/0/a%2Fb"),
        ("redis://h/0/5", "redis://h:6379/0/5"),  # a key that is a number needs its db
        ("redis://[::1]:7000/1/s", "redis://[::1]:7000/1/s"),
        ("redis://h/0/na%C3%AFve%20key", "redis://h:6379/0/na%C3%AFve%20key"),
    ],
)
def test_uris_are_canonical(given, expected):
    assert canonical(given) == expected
    assert canonical(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("redis:///0/customers", "names no host"),
        ("redis://h:6379/0", "names database 0 but no stream key"),
        ("redis://h:6379/", "names no stream key"),
        ("redis://h:6379/0/", "names no stream key"),
        ("redis://h:notaport/0/s", "not a port number"),
        ("redis://h/0/s?x=1", "takes no query"),
        ("http://h/0/s", "scheme must be one of redis, rediss"),
    ],
)
def test_bad_uris_say_what_is_wrong_and_the_form(given, complaint):
    with pytest.raises(ValueError) as failure:
        canonical(given)
    message = str(failure.value)
    assert complaint in message and urlunsplit(urlsplit(given)) in message
    assert "redis://host:port/db/<stream key>" in message


def test_the_address_of_a_connection_and_its_namespace_and_uri():
    where = address("Redis.Local", None, {"db": "2"}, "crm:{orders}")
    assert where == StreamAddress("redis.local", 6379, 2, "crm:{orders}")
    assert where.namespace == "redis://redis.local:6379/2"  # OpenLineage's namespace of the stream
    assert where.uri == "redis://redis.local:6379/2/crm:%7Borders%7D"
    assert parse(where.uri) == where
    assert address(None, 7001, None, "s").uri == "redis://localhost:7001/0/s"
    assert address("h", 6379, {"db": 0}, "s").db == 0
    assert address("h", 6379, {"cluster": True, "db": None}, "s").uri == "redis://h:6379/0/s"
    assert address("h", 6379, {"cluster": "true"}, "s").db == 0


def test_a_connection_with_a_bad_db_or_no_stream_is_refused():
    with pytest.raises(ValueError, match="must be a number >= 0, got 'one'"):
        address("h", 6379, {"db": "one"}, "s")
    with pytest.raises(ValueError, match="empty"):
        address("h", 6379, {}, "")


def test_the_alias_is_named_by_connection_and_stream():
    assert alias_name("redis_default", "customers") == "dbstream:redis_default:customers"


CYCLE = {"stream": "s", "rows_read": 5, "emitted": 3, "duplicates": 2, "deletes": 1, "watermark": "w"}


def test_a_cycle_that_emitted_gives_its_figures_and_a_quiet_one_none():
    assert cycle_event(CYCLE) == {
        "stream": "s",
        "action": "cycle",
        "cycles": 1,
        "rows_read": 5,
        "emitted": 3,
        "duplicates": 2,
        "deletes": 1,
        "watermark": "w",
    }
    assert cycle_event({**CYCLE, "emitted": 0, "deletes": 0, "duplicates": 5}) is None


def test_a_run_of_several_cycles_gives_their_sums():
    run = {**CYCLE, "emitted": 0, "cycles": 4, "rows_read_total": 20, "emitted_total": 7}
    run |= {"duplicates_total": 13, "deletes_total": 2}
    extra = cycle_event(run)
    assert extra is not None
    assert (extra["cycles"], extra["emitted"], extra["rows_read"], extra["deletes"]) == (4, 7, 20, 2)
    assert cycle_event({**run, "emitted_total": 0}) is None  # the last cycle's own count does not matter


def test_replays_and_reconciles_give_an_event_only_when_they_appended():
    replayed = {"stream": "s", "replay": "manual__1", "replay_from": "a", "replay_to": "b", "rows_read": 4}
    assert replay_event({**replayed, "replayed": 4})["emitted"] == 4
    assert replay_event({**replayed, "replayed": 0}) is None
    assert reconcile_event({"stream": "s", "deleted": 2, "keys_scanned": 9})["deletes"] == 2
    assert reconcile_event({"stream": "s", "deleted": 0, "keys_scanned": 9}) is None
