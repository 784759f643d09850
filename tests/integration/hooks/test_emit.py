"""The emit script against a per-row model of the dedup rule, on batches that stress its batching."""

from __future__ import annotations

import random

import msgspec
import pytest

from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.rows import Message, Version, Versions
from airflow_dbstream.hooks.redis_stream import EmitResult, RedisStreamHook

pytestmark = pytest.mark.integration


class Model:
    """The rule of DESIGN.md, one row at a time: new key, newer epoch, or same epoch with another digest."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # a zset's score is a double: above 2^53 an epoch rounds
        self.digest: dict[str, str] = {}
        self.stream: list[tuple[str, int, bytes]] = []

    def emit(self, batch: list[Message]) -> tuple[int, int]:
        emitted = 0
        for m in batch:
            last, epoch = self.seen.get(m.pkey), float(m.epoch_us)
            if last is None or epoch > last or (epoch == last and self.digest[m.pkey] != m.digest):
                self.stream.append((m.pkey, m.epoch_us, m.payload))
                self.seen[m.pkey], self.digest[m.pkey] = epoch, m.digest
                emitted += 1
        return emitted, len(batch) - emitted


def _message(pkey: int, epoch: int, content: int, base: int = 1_700_000_000_000_000) -> Message:
    payload = f'{{"id":{pkey},"v":{content}}}'.encode()
    return Message(str(pkey), base + epoch, f"{content % 256:032x}", payload)


# The scripts compare epochs as texts where that is exact; these bases make the epochs of one test
# cross a sign, a change of length, or 2^53 (where a score rounds and texts no longer tell).
BASES = {"today": 1_700_000_000_000_000, "sign": -2, "length": 998, "2^53": 2**53 - 2, "e17": 10**17 - 2}


@pytest.mark.parametrize("precheck", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("base", BASES.values(), ids=BASES.keys())
def test_batched_script_matches_the_per_row_rule(stream, redis_client, seed, precheck, base):
    rng = random.Random(seed)
    message = lambda pkey, epoch, content: _message(pkey, epoch, content, base)  # noqa: E731
    hook, keys, model = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream), Model()
    for size in (1, 7, 999, 1000, 1001, 2600, 40, 200, 200):
        # Few keys, few epochs and contents: repeats of a key inside one batch, older, equal and newer
        # epochs, equal epochs with another payload; sizes across the script's chunk of 1000.
        batch = [message(rng.randrange(300), rng.randrange(5), rng.randrange(3)) for _ in range(size)]
        if size == 200:  # no repeated key: the precheck filters
            batch = [message(k, rng.randrange(5), rng.randrange(3)) for k in rng.sample(range(300), size)]
        result = hook.emit(keys, "v1", None, batch, precheck=precheck)
        assert (result.emitted, result.duplicates) == model.emit(batch)

    entries = redis_client.xrange(stream)
    assert [(f[b"pkey"].decode(), int(f[b"epoch"]), f[b"payload"]) for _, f in entries] == model.stream
    seen = dict((k.decode(), v) for k, v in redis_client.zrange(keys.seen, 0, -1, withscores=True))
    assert seen == model.seen
    assert {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.digest).items()} == model.digest


@pytest.mark.parametrize("precheck", [False, True])
def test_a_batch_of_only_duplicates_writes_nothing(stream, redis_client, precheck):
    hook, keys = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream)
    batch = [_message(i, 1, 0) for i in range(1500)]
    assert hook.emit(keys, "v1", None, batch).emitted == 1500
    before = redis_client.xinfo_stream(stream)["last-generated-id"]
    again = hook.emit(keys, "v1", 10, batch, precheck=precheck)
    assert (again.emitted, again.duplicates) == (0, 1500)
    assert redis_client.xinfo_stream(stream)["last-generated-id"] == before


def test_precheck_sends_no_payload_of_an_unchanged_batch(stream, redis_client, monkeypatch):
    hook, keys = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream)
    batch = [_message(i, 1, 0) for i in range(50)]
    hook.emit(keys, "v1", None, batch)
    changed = [*batch[:49], _message(49, 1, 1)]  # same epoch, another payload
    calls = []
    run = hook.run_script

    def counting_run(name, keys, script_keys, args, lease=None):
        calls.append((name, args))
        return run(name, keys, script_keys, args, lease)

    monkeypatch.setattr(hook, "run_script", counting_run)
    assert hook.emit(keys, "v1", None, batch, precheck=True) == EmitResult(0, 50)
    # only precheck.lua ran, with one argument: each row's pkey, epoch and digest, no payload
    assert [(name, len(args)) for name, args in calls] == [("precheck", 1)]
    assert msgspec.msgpack.decode(calls[0][1][0]) == [
        t for m in batch for t in (m.pkey, str(m.epoch_us), m.digest)
    ]
    calls.clear()
    assert hook.emit(keys, "v1", None, changed, precheck=True) == EmitResult(1, 49, changed[49].epoch_us)
    assert [name for name, _args in calls] == ["precheck", "emit"]
    pkey, epoch, digest, payload = changed[49]  # only the changed row is sent, as one MessagePack argument
    assert msgspec.msgpack.decode(calls[1][1][2]) == [pkey, str(epoch), digest, payload.decode()]


def test_precheck_leaves_exactly_the_rows_the_rule_calls_new(stream, redis_client):
    """precheck.lua applies the rule in Redis: the positions it returns are the rows the per-row model
    would emit (not merely a superset: an unchanged window must cost no payload)."""
    rng = random.Random(7)
    hook, keys, model = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream), Model()
    known = [_message(k, rng.randrange(3), rng.randrange(2)) for k in range(1500)]
    hook.emit(keys, "v1", None, known)
    model.emit(known)
    redis_client.hdel(keys.digest, "5", "6")  # a stored digest gone: a tie with it may be new
    del model.digest["5"], model.digest["6"]
    left = read = 0
    for size in (1, 999, 1000, 1001, 2500):
        keys_read = rng.sample(range(3000), size)  # half of them never seen
        batch = [_message(k, rng.randrange(3), rng.randrange(2)) for k in keys_read]
        batch += [_message(k, 1, 0) for k in (5, 6) if k not in keys_read]
        expected = [
            i
            for i, m in enumerate(batch)
            if (last := model.seen.get(m.pkey)) is None
            or m.epoch_us > last
            or (m.epoch_us == last and model.digest.get(m.pkey) != m.digest)
        ]
        versions = Versions.of([Version(m.pkey, m.epoch_us, m.digest) for m in batch])
        assert list(hook.may_be_new(keys, versions)) == expected
        left, read = left + len(expected), read + len(batch)
    assert 0.3 < left / read < 0.9  # the batches mixed new and known rows
    unchanged = Versions.of([Version(m.pkey, m.epoch_us, m.digest) for m in known[10:1200]])
    assert list(hook.may_be_new(keys, unchanged)) == []
