"""Bounded memory: a 200,000-row window streams through the worker without holding it (benchmark: 1M)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Buffering these 200,000 rows of 300 characters (a client cursor's fetchall) grows the worker by
# 100-170 MB; streaming them grows it by about 2 MB.
LIMIT_MB = 50


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", PROJECT_ROOT / "benchmarks/memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["postgres", "mariadb", "sqlite"])
def test_a_200k_row_window_keeps_the_worker_small(kind):
    result = _benchmark().measure(kind, 200_000, width=300, batch_size=1000)
    assert result["rows_read"] == result["emitted"] == 200_000
    assert result["growth_mb"] < LIMIT_MB, result
