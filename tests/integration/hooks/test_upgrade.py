"""upgrade.lua on the real Redis: the bare digests earlier builds kept in `<tag>:digest` become versions
(epoch:digest) in chunks, once; an upgrade cut short is finished by running it again."""

from __future__ import annotations

import pytest

from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.rows import Message
from airflow_dbstream.hooks.lease import hold
from airflow_dbstream.hooks.redis_stream import RedisStreamHook

pytestmark = pytest.mark.integration


def _old_stream(redis_client, keys: StreamKeys, n: int) -> dict[str, str]:
    """What format 2 left: `seen` pkey -> epoch, `digest` pkey -> 32 hex digits; the versions expected."""
    epochs = {str(k): 1_764_000_000_000_000 + k for k in range(n)}
    digests = {pkey: f"{int(pkey) * 7919:032x}" for pkey in epochs}
    redis_client.zadd(keys.seen, epochs)
    redis_client.hset(keys.digest, mapping=digests)
    return {pkey: f"{epochs[pkey]}:{digests[pkey]}" for pkey in epochs}


def _hash(redis_client, keys: StreamKeys) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.digest).items()}


def test_bare_digests_become_versions_in_chunks_and_a_second_run_changes_nothing(stream, redis_client):
    hook, keys = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream)
    expected = _old_stream(redis_client, keys, 2500)
    redis_client.hset(keys.digest, "orphan", "f" * 32)  # no `seen` member: nothing to pair it with
    calls = []
    run = hook.run_script
    hook.run_script = lambda name, *a, **k: calls.append(name) or run(name, *a, **k)
    with hold(hook, keys, lease_ms=30_000) as lease:
        assert hook.upgrade_versions(keys, keep_digests=True, lease=lease, chunk=500) == 2501
        assert calls.count("upgrade") > 2  # HSCAN's chunks, not one call over the whole hash
        assert _hash(redis_client, keys) == expected  # the orphan is gone, every digest kept
        assert hook.upgrade_versions(keys, keep_digests=True, lease=lease, chunk=500) == 0


def test_digests_of_an_older_format_are_not_kept(stream, redis_client):
    """Format 1's raw bytes (or BLAKE2b's) equal no digest of today: they become a placeholder, so a
    row at the same epoch is new once, and a newer row still is, an older one still is not."""
    hook, keys = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream)
    _old_stream(redis_client, keys, 3)
    redis_client.hset(keys.digest, "1", bytes(range(16)))
    with hold(hook, keys, lease_ms=30_000) as lease:
        assert hook.upgrade_versions(keys, keep_digests=False, lease=lease) == 3
    assert _hash(redis_client, keys)["1"] == f"{1_764_000_000_000_001}:{'-' * 32}"
    base = 1_764_000_000_000_000
    rows = [
        Message("0", base + 0, f"{0:032x}", b"{}"),  # its epoch and (hex) digest as before: sent once more
        Message("1", base + 2, "a" * 32, b"{}"),  # newer
        Message("2", base + 1, "b" * 32, b"{}"),  # older than `seen` holds (base + 2)
    ]
    result = hook.emit(keys, "v1", None, rows)
    assert (result.emitted, result.duplicates) == (2, 1)
    assert [f[b"pkey"] for _, f in redis_client.xrange(stream)] == [b"0", b"1"]
