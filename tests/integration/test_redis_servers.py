"""The test helper that starts redis-servers leaves none behind, even when one fails to start."""

from __future__ import annotations

import pytest
import redis

from tests.integration.redis_servers import RedisServer, free_port

pytestmark = pytest.mark.integration


def test_a_server_that_does_not_answer_in_time_is_killed(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "slow")
    nobody = free_port()  # the pings go where no server answers: start() waits, then gives up
    monkeypatch.setattr(server, "admin", lambda **kw: redis.Redis(port=nobody, socket_timeout=0.1))
    with pytest.raises(RuntimeError, match="did not start"):
        server.start(timeout=0.5)
    assert server.proc is not None and server.proc.poll() is not None  # no redis-server left running


def test_a_server_that_cannot_start_reports_its_log(tmp_path):
    server = RedisServer(tmp_path / "bad", "--no-such-option", "1")
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert server.proc is not None and server.proc.poll() is not None
