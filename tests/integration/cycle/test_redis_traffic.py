"""A cycle's Redis traffic, command by command, is pinned: a redesign that changes it must say so."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from itertools import groupby
from pathlib import Path

import pytest

from tests.integration.conftest import run_cycle

pytestmark = pytest.mark.integration

EXPECTED = Path(__file__).with_name("cycle_traffic.txt")


def _command(line: str, stream: str) -> str:
    """'EVALSHA <sha> 2 k1 k2 args...' -> "EVALSHA keys=['k1', 'k2']"; others: the command and its key."""
    parts = line.replace(stream, "S").split(" ")
    name = parts[0].upper()
    if name == "EVALSHA":
        return f"EVALSHA keys={parts[3 : 3 + int(parts[2])]}"
    return f"{name} {parts[1] if len(parts) > 1 else ''}"


def test_a_first_load_a_changed_and_an_unchanged_window_send_the_recorded_commands(
    pg_table, stream, redis_client
):
    at = pg_table.now() - timedelta(minutes=5)
    pg_table.insert([(i, f"n{i}", at - timedelta(seconds=i)) for i in range(1, 251)])
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            for command in monitor.listen():
                if stop.is_set():
                    return
                seen.append(command["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    run_cycle(pg_table, stream, snapshot_chunk_size=200)
    pg_table.execute("UPDATE {table} SET name = 'x' || id, updated_at = clock_timestamp() WHERE id <= 30")
    run_cycle(pg_table, stream, snapshot_chunk_size=200)
    run_cycle(pg_table, stream, snapshot_chunk_size=200)
    time.sleep(0.3)
    stop.set()
    redis_client.ping()  # wakes the monitor so it sees the stop
    watcher.join(5)

    commands = [_command(line, stream) for line in seen if stream in line]
    counted = [f"{len(list(run))} {command}" for command, run in groupby(commands)]
    assert counted == EXPECTED.read_text().splitlines()
