"""No script call stalls Redis: with a large `seen`, trim runs in bounded chunks and every call is short.

The full figure (1,000,000 members, 50 ms) is benchmarks/redis_stall.py; this is its smaller twin.
"""

from __future__ import annotations

import pytest

from benchmarks.redis_stall import measure
from tests.integration.conftest import set_connection

pytestmark = pytest.mark.integration


def test_trim_of_100k_seen_members_is_chunked_and_no_call_is_long(own_redis, monkeypatch):
    server = own_redis()
    set_connection(monkeypatch, "redis_stall", server.connection())
    result = measure("redis_stall", server.admin(), members=100_000, batches=5)
    assert result["calls"]["trim"] >= 100  # 100,000 members, at most 1,000 per call
    assert result["seen_left"] < 5 * 1000
    # server time per call (SLOWLOG); loose bounds for a busy CI machine
    assert result["max_ms"]["trim"] < 50, result
    assert result["max_ms"]["commit"] < 50, result
    assert result["max_ms"]["emit"] < 100, result
