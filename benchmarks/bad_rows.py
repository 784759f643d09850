"""What a bad row costs the worker: Pipeline.prepare over 100k rows in batches of 1,000, per mode.

Count instructions, not time (this machine's timing drifts): run each mode under callgrind and
subtract the ``none`` mode (imports and building the rows, no prepare):

    for m in none fail dead dead_bad; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$m .venv/bin/python benchmarks/bad_rows.py $m
    done

Modes: ``fail`` (on_bad_row="fail", clean rows), ``dead`` (on_bad_row="dead_letter", clean rows),
``dead_bad`` (dead_letter, one row without a key per batch). Airflow is not imported: the hook
modules the pipeline names are stubbed (prepare never calls them). Measured on 2026-12-04 (G
instructions, imports subtracted): fail 2.239, dead 2.240, dead_bad 9.331; at d1dd0d5 fail 2.242.
"""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
for name, attrs in {
    "airflow_dbstream.hooks.lease": ["Lease"],
    "airflow_dbstream.hooks.redis_stream": ["EmitResult", "RedisStreamHook"],
}.items():
    module = types.ModuleType(name)
    for attr in attrs:
        setattr(module, attr, type(attr, (), {}))
    sys.modules[name] = module

from airflow_dbstream.core.spec import StreamSpec  # noqa: E402
from airflow_dbstream.cycle.pipeline import Pipeline  # noqa: E402

MODES = ("none", "fail", "dead", "dead_bad")


def main(mode: str, n: int = 100_000) -> int:
    assert "airflow" not in sys.modules and mode in MODES
    spec = StreamSpec(
        stream="bench", sql="", pkey_column="id", epoch_column="u", lookback=timedelta(minutes=1),
        variant="v", on_bad_row="dead_letter" if mode.startswith("dead") else "fail",
    )  # fmt: skip
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(i, f"name {i}", at + timedelta(microseconds=i)) for i in range(n)]
    if mode == "dead_bad":
        rows = [(None, *r[1:]) if r[0] % 1000 == 500 else r for r in rows]
    pipeline = Pipeline(spec, None, None)  # type: ignore[arg-type]
    letters = 0
    if mode != "none":
        for k in range(0, n, 1000):
            letters += len(pipeline.prepare(["id", "name", "u"], rows[k : k + 1000], k).dead_letters)
    print(f"{mode}: {n} rows, {letters} dead letters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dead_bad"))
