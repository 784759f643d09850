"""The emit script against a per-row model of the dedup rule, on batches that stress its batching."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import msgspec
import pytest

from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.rows import Message, Version, Versions
from airflow_dbstream.hooks.redis_stream import EmitResult, RedisStreamHook
from tests.integration.conftest import set_connection

pytestmark = pytest.mark.integration


class Model:
    """The rule of DESIGN.md, one row at a time: new key, newer epoch, or same epoch with another digest.
    Epochs compare exactly, at any size; `seen` holds them as a zset does, as doubles (for the trim)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, str]] = {}  # pkey -> (epoch, digest) last sent
        self.stream: list[tuple[str, int, bytes]] = []

    def emit(self, batch: list[Message]) -> tuple[int, int]:
        emitted = 0
        for m in batch:
            last = self.last.get(m.pkey)
            if last is None or m.epoch_us > last[0] or (m.epoch_us == last[0] and m.digest != last[1]):
                self.stream.append((m.pkey, m.epoch_us, m.payload))
                self.last[m.pkey] = (m.epoch_us, m.digest)
                emitted += 1
        return emitted, len(batch) - emitted

    def seen(self) -> dict[str, float]:
        return {pkey: float(epoch) for pkey, (epoch, _) in self.last.items()}

    def versions(self) -> dict[str, str]:
        return {pkey: f"{epoch}:{digest}" for pkey, (epoch, digest) in self.last.items()}


def _message(pkey: int, epoch: int, content: int, base: int = 1_700_000_000_000_000) -> Message:
    payload = f'{{"id":{pkey},"v":{content}}}'.encode()
    return Message(str(pkey), base + epoch, f"{content % 256:032x}", payload)


# The scripts compare epochs as texts where that is exact; these bases make the epochs of one test
# cross a sign, a change of length, or 2^53 (above which a double, as a zset's score, rounds).
BASES = {"today": 1_700_000_000_000_000, "sign": -2, "length": 998, "2^53": 2**53 - 2, "e17": 10**17 - 2}


@pytest.mark.parametrize("precheck", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("base", BASES.values(), ids=BASES.keys())
def test_batched_script_matches_the_per_row_rule(stream, redis_client, seed, precheck, base):
    _matches_the_model(RedisStreamHook("redis_test"), redis_client, stream, seed, precheck, base)


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory):
    """en_US.UTF-8 compiled by localedef (Debian's `locales` definitions, which setup.sh installs)."""
    where = tmp_path_factory.mktemp("locale")
    localedef = shutil.which("localedef") or "/usr/bin/localedef"
    subprocess.run([localedef, "-i", "en_US", "-f", "UTF-8", str(where / "en_US.UTF-8")], check=True)
    return where


@pytest.mark.parametrize("precheck", [False, True])
@pytest.mark.parametrize("base", [BASES["sign"], BASES["today"]], ids=["sign", "today"])
def test_the_rule_holds_where_redis_collates_strings_by_a_locale(
    own_redis, locale_dir, monkeypatch, precheck, base
):
    """Redis sets LC_COLLATE from its environment, and Lua compares strings by it: en_US.UTF-8 sorts
    "-5" after "0" (it ignores the '-'). Epochs must still compare as numbers do."""
    env = {**os.environ, "LOCPATH": str(locale_dir), "LC_ALL": "en_US.UTF-8"}
    server = own_redis(env=env)
    client = server.admin()
    assert client.eval("return ('-5' < '0') and 1 or 0", 0) == 0  # the server does collate by en_US
    set_connection(monkeypatch, "redis_locale", server.connection())
    _matches_the_model(RedisStreamHook("redis_locale"), client, "test:locale", 1, precheck, base)


def _matches_the_model(hook, redis_client, stream, seed, precheck, base):
    rng = random.Random(seed)
    message = lambda pkey, epoch, content: _message(pkey, epoch, content, base)  # noqa: E731
    keys, model = StreamKeys.for_stream(stream), Model()
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
    assert seen == model.seen()
    assert {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.digest).items()} == model.versions()


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
    # only precheck.lua ran, with one argument: each row's pkey and version (epoch:digest), no payload
    assert [(name, len(args)) for name, args in calls] == [("precheck", 1)]
    assert msgspec.msgpack.decode(calls[0][1][0]) == [
        t for m in batch for t in (m.pkey, f"{m.epoch_us}:{m.digest}")
    ]
    calls.clear()
    assert hook.emit(keys, "v1", None, changed, precheck=True) == EmitResult(1, 49, changed[49].epoch_us)
    assert [name for name, _args in calls] == ["precheck", "emit"]
    pkey, epoch, digest, payload = changed[49]  # only the changed row is sent, as one MessagePack argument
    assert msgspec.msgpack.decode(calls[1][1][2]) == [pkey, str(epoch), f"{epoch}:{digest}", payload.decode()]


def test_precheck_leaves_exactly_the_rows_the_rule_calls_new(stream, redis_client):
    """precheck.lua applies the rule in Redis: the positions it returns are the rows the per-row model
    would emit (not merely a superset: an unchanged window must cost no payload)."""
    rng = random.Random(7)
    hook, keys, model = RedisStreamHook("redis_test"), StreamKeys.for_stream(stream), Model()
    known = [_message(k, rng.randrange(3), rng.randrange(2)) for k in range(1500)]
    hook.emit(keys, "v1", None, known)
    model.emit(known)
    redis_client.hdel(keys.digest, "5", "6")  # a stored version gone: the row is new, whatever its epoch
    redis_client.hset(keys.digest, "7", "0" * 32)  # a bare digest no upgrade rewrote: sent, not lost
    del model.last["5"], model.last["6"], model.last["7"]
    left = read = 0
    for size in (1, 999, 1000, 1001, 2500):
        keys_read = rng.sample(range(3000), size)  # half of them never seen
        batch = [_message(k, rng.randrange(3), rng.randrange(2)) for k in keys_read]
        batch += [_message(k, 1, 0) for k in (5, 6, 7) if k not in keys_read]
        expected = [
            i
            for i, m in enumerate(batch)
            if (last := model.last.get(m.pkey)) is None
            or m.epoch_us > last[0]
            or (m.epoch_us == last[0] and m.digest != last[1])
        ]
        versions = Versions.of([Version(m.pkey, m.epoch_us, m.digest) for m in batch])
        assert list(hook.may_be_new(keys, versions)) == expected
        left, read = left + len(expected), read + len(batch)
    assert 0.3 < left / read < 0.9  # the batches mixed new and known rows
    unchanged = Versions.of([Version(m.pkey, m.epoch_us, m.digest) for m in known[10:1200]])
    assert list(hook.may_be_new(keys, unchanged)) == []
