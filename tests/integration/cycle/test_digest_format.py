"""Streams an earlier build wrote, on the real Postgres and Redis: `<tag>:digest` held bare digests, now
versions (epoch:digest). Digests of today's format are rewritten and nothing is sent again; older ones
(BLAKE2b of the payload, format 1) send their window again at most once, with one WARNING. Either way
`<tag>:state` then records the versions' format."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from airflow_dbstream.core.digest import FORMAT, VERSIONS_FORMAT
from airflow_dbstream.core.keys import DIGEST_FORMAT, StreamKeys
from tests.integration.conftest import read_stream, run_cycle

pytestmark = pytest.mark.integration


def warnings_about_the_format(capfd) -> list[str]:
    captured = capfd.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if "digests were written in" in line]


def test_old_format_stream_is_resent_once_with_one_warning_then_never(pg_table, stream, redis_client, capfd):
    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now - timedelta(seconds=i)) for i in range(1, 31)])
    keys = StreamKeys.for_stream(stream)

    first = run_cycle(pg_table, stream)
    assert first["emitted"] == 30
    assert redis_client.hget(keys.state, DIGEST_FORMAT).decode() == VERSIONS_FORMAT
    assert warnings_about_the_format(capfd) == []  # a new stream has nothing to warn about

    # What an earlier build left: BLAKE2b digests of the payloads, and no format in the state.
    for message in read_stream(redis_client, stream):
        old = hashlib.blake2b(message["payload"].encode(), digest_size=16).digest()
        redis_client.hset(keys.digest, message["pkey"], old)
    redis_client.hdel(keys.state, DIGEST_FORMAT)
    assert run_cycle(pg_table, stream)["emitted"] == 30  # the window, once more (the documented cost)
    (warning,) = warnings_about_the_format(capfd)
    assert "[warning" in warning and stream in warning and "docs/performance.md" in warning
    assert redis_client.hget(keys.state, DIGEST_FORMAT).decode() == VERSIONS_FORMAT

    again = run_cycle(pg_table, stream)
    assert (again["emitted"], again["duplicates"]) == (0, 30)
    assert warnings_about_the_format(capfd) == []
    assert len(read_stream(redis_client, stream)) == 60


def test_a_failed_upgrade_cycle_warns_again_and_resends_only_what_it_had_not(
    pg_table, stream, redis_client, capfd, monkeypatch
):
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook

    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now - timedelta(seconds=i)) for i in range(1, 251)])
    keys = StreamKeys.for_stream(stream)
    run_cycle(pg_table, stream)
    for message in read_stream(redis_client, stream):
        old = hashlib.blake2b(message["payload"].encode(), digest_size=16).digest()
        redis_client.hset(keys.digest, message["pkey"], old)
    redis_client.hdel(keys.state, DIGEST_FORMAT)
    capfd.readouterr()

    real_commit = RedisStreamHook.commit

    def failing_commit(self, *args, **kwargs):
        raise RuntimeError("the worker died before its commit")

    monkeypatch.setattr(RedisStreamHook, "commit", failing_commit)
    with pytest.raises(RuntimeError):
        run_cycle(pg_table, stream)
    assert len(warnings_about_the_format(capfd)) == 1
    assert len(read_stream(redis_client, stream)) == 500  # every row of the window once more
    monkeypatch.setattr(RedisStreamHook, "commit", real_commit)

    rerun = run_cycle(pg_table, stream)  # the cleared task: the format is still unrecorded, nothing is new
    assert (rerun["emitted"], rerun["duplicates"]) == (0, 250)
    assert len(warnings_about_the_format(capfd)) == 1
    assert redis_client.hget(keys.state, DIGEST_FORMAT).decode() == VERSIONS_FORMAT
    assert len(read_stream(redis_client, stream)) == 500


def test_a_format_1_stream_is_resent_once_with_one_warning_naming_it(pg_table, stream, redis_client, capfd):
    """Format 1 held the same xxh3-128 as 16 raw bytes: no digest of format 2 (hex text) equals one."""
    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now - timedelta(seconds=i)) for i in range(1, 21)])
    keys = StreamKeys.for_stream(stream)
    run_cycle(pg_table, stream)
    for pkey, version in redis_client.hgetall(keys.digest).items():
        digest = version.decode().split(":")[1]
        redis_client.hset(keys.digest, pkey, bytes.fromhex(digest))  # as format 1 stored it
    redis_client.hset(keys.state, DIGEST_FORMAT, "xxh3-128:msgpack-typed:1")
    capfd.readouterr()

    assert run_cycle(pg_table, stream)["emitted"] == 20
    (warning,) = warnings_about_the_format(capfd)
    assert "format 'xxh3-128:msgpack-typed:1'" in warning and FORMAT in warning
    assert redis_client.hget(keys.state, DIGEST_FORMAT).decode() == VERSIONS_FORMAT
    again = run_cycle(pg_table, stream)
    assert (again["emitted"], again["duplicates"], warnings_about_the_format(capfd)) == (0, 20, [])


def test_a_format_2_stream_keeps_its_digests_as_versions_and_sends_nothing_again(
    pg_table, stream, redis_client, capfd
):
    """Format 2 held the bare hex digest: the upgrade pairs each with its epoch from `seen`, in chunks."""
    now = pg_table.now()
    pg_table.insert([(i, f"customer {i}", now - timedelta(seconds=i)) for i in range(1, 2501)])
    keys = StreamKeys.for_stream(stream)
    run_cycle(pg_table, stream)
    versions = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.digest).items()}
    scores = dict(redis_client.zrange(keys.seen, 0, -1, withscores=True))
    assert all(v == f"{int(scores[k.encode()])}:{v.split(':')[1]}" for k, v in versions.items())
    for pkey, version in versions.items():  # what format 2 left: the digest alone
        redis_client.hset(keys.digest, pkey, version.split(":")[1])
    redis_client.hset(keys.state, DIGEST_FORMAT, FORMAT)
    redis_client.hset(keys.digest, "gone", "0" * 32)  # a digest without its `seen` member: dropped
    capfd.readouterr()

    again = run_cycle(pg_table, stream)
    assert (again["emitted"], again["duplicates"]) == (0, 2500)  # nothing sent again
    said = capfd.readouterr()
    assert "digests were written in" not in said.out + said.err  # no WARNING
    assert "2501 entries of {" + stream + "}:digest rewritten from digests to versions" in said.out + said.err
    assert {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.digest).items()} == versions
    assert redis_client.hget(keys.state, DIGEST_FORMAT).decode() == VERSIONS_FORMAT
    assert len(read_stream(redis_client, stream)) == 2500
