"""Peer benchmark: dlt's incremental SQL load beside our cycle, in the same run, on the same table.

Users choose dlt (``sql_database``'s ``sql_table`` with ``incremental`` and a primary key) for
incremental loads from SQL. This runs both on the table of ``benchmarks/bench.py`` (10 columns,
Postgres), in alternating rounds (odd rounds ours first, even rounds dlt first), and keeps the best
rows/s of each for each step:

  first load   ours: the first cycle of a fresh stream (the chunked snapshot)
               dlt:  the first run of a fresh pipeline into duckdb (append)
  changed      every row updated (one UPDATE), then ours: the next cycle; dlt: the next run (append)
  re-read      nothing changed; ours: the next cycle re-reads the window (all duplicates);
               dlt: a run with ``lag`` covering the table and ``write_disposition="merge"``

dlt uses its fastest backend here (connectorx, Arrow tables) unless ``--backend`` says otherwise.
Each side's output is checked: ours by the cycle's figures and the stream's length, dlt's by the rows
in duckdb (count, distinct keys, the newest epoch).

Run: ``.venv/bin/python benchmarks/peer_dlt.py --rows 100000 --rounds 3`` (the ``bench`` extra has dlt).
Writes ``--out``/peer-dlt-<time>.json and prints the ratios ours / dlt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")  # not its per-run type-mapping warnings
# dlt reads its secrets from Airflow Variables when Airflow is importable; there is no metadata DB here.
os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")

import bench  # noqa: E402  (sets up sys.path and Airflow's environment for the project's side)

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
STEPS = ("first_load", "changed", "reread")
CEILINGS = ("redis_new_rows", "redis_duplicates", "sql_read")
# The table's epochs span the hour that ended ten minutes before the first load (AGE_TABLE, untimed);
# then every row gets a new, distinct epoch within the last minute (ordered by key), later than any
# it had, so the next cycle or run sees each row changed once.
AGE_TABLE = "UPDATE {t} SET updated_at = updated_at - interval '10 minutes'"
UPDATE_ALL = "UPDATE {t} SET updated_at = now() - interval '50 seconds' + id * (interval '40 seconds' / {n})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="connectorx", choices=["connectorx", "pyarrow", "sqlalchemy"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default=None, help="file name stem of the JSON (default: peer-dlt-<time>)")
    return parser.parse_args(argv)


class Ours:
    """Our operator's cycles on one fresh stream: the first load, the changed cycle, the re-read."""

    def __init__(self, b: bench.Bench, table: str, label: str) -> None:
        self.b, self.table, self.rows = b, table, 0
        self.stream = b.stream(label)
        self.op = b.operator(table, self.stream, lookback=timedelta(days=1))

    def step(self, name: str, rows: int) -> float:
        started = time.perf_counter()
        figures = self.op.execute(context={})
        seconds = time.perf_counter() - started
        expected = {"first_load": (rows, rows, 0), "changed": (rows, rows, 0), "reread": (rows, 0, rows)}
        got = (figures["rows_read"], figures["emitted"], figures["duplicates"])
        assert got == expected[name], (name, got, expected[name])
        return seconds

    def close(self, rows: int) -> None:
        assert self.b.redis.xlen(self.stream) == 2 * rows  # the first load and the changed rows, once each
        self.b.drop_stream(self.stream)


class Dlt:
    """dlt's ``sql_table`` with an incremental cursor and a primary key, into a duckdb file of its own."""

    def __init__(self, table: str, backend: str, workdir: Path) -> None:
        import dlt

        self.dlt, self.table, self.backend = dlt, table, backend
        self.database = workdir / "dlt.duckdb"
        self.pipeline = dlt.pipeline(
            pipeline_name=f"peer_{table}",
            pipelines_dir=str(workdir / "pipelines"),
            destination=dlt.destinations.duckdb(str(self.database)),
            dataset_name="peer",
        )

    def _resource(self, lag: float | None) -> Any:
        from dlt.sources.sql_database import sql_table

        return sql_table(
            credentials=PG_URL,
            table=self.table,
            backend=self.backend,
            incremental=self.dlt.sources.incremental("updated_at", lag=lag),
            primary_key="id",
        )

    def step(self, name: str, rows: int) -> float:
        lag, disposition = (86_400.0, "merge") if name == "reread" else (None, "append")
        started = time.perf_counter()
        self.pipeline.run(self._resource(lag), write_disposition=disposition)
        seconds = time.perf_counter() - started
        expected = {"first_load": rows, "changed": 2 * rows, "reread": rows}[name]
        count, keys = self._count()
        assert (count, keys) == (expected, rows), (name, count, keys, expected)
        return seconds

    def _count(self) -> tuple[int, int]:
        import duckdb

        with duckdb.connect(str(self.database), read_only=True) as db:
            return db.execute(f"SELECT count(*), count(DISTINCT id) FROM peer.{self.table}").fetchone()


def one_round(b: bench.Bench, rows: int, backend: str, round_: int) -> dict[str, dict[str, float]]:
    """One table, both systems, each step in turn; odd rounds ours first."""
    table = b.table(rows, span_seconds=3600)
    b.db.execute(AGE_TABLE.format(t=table))
    b.db.execute(f"VACUUM ANALYZE {table}")
    seconds: dict[str, dict[str, float]] = {"ours": {}, "dlt": {}}
    with tempfile.TemporaryDirectory(prefix="peer-dlt-") as workdir:
        ours, peer = Ours(b, table, f"peer{round_}"), Dlt(table, backend, Path(workdir))
        order = [("ours", ours), ("dlt", peer)] if round_ % 2 else [("dlt", peer), ("ours", ours)]
        for step in STEPS:
            if step == "changed":
                b.db.execute(UPDATE_ALL.format(t=table, n=rows))
                b.db.execute(f"VACUUM ANALYZE {table}")
            for who, side in order:
                print(f"[round {round_}] {who} {step} ...", file=sys.stderr, flush=True)
                seconds[who][step] = side.step(step, rows)
        ours.close(rows)
    # The ceilings of our side, on the same table: Redis's emit of pre-encoded batches, a bare SQL read.
    new, duplicates = b.redis_ceiling(table, rows)
    seconds["ceilings"] = {
        "redis_new_rows": new["seconds"],
        "redis_duplicates": duplicates["seconds"],
        "sql_read": b.sql_ceiling(table, rows)["seconds"],
    }
    b.db.execute(f"DROP TABLE {table}")
    b.tables.remove(table)
    return seconds


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import dlt

    b = bench.Bench(bench.parse_args([]))
    rounds = []
    try:
        for round_ in range(1, args.rounds + 1):
            rounds.append(one_round(b, args.rows, args.backend, round_))
    finally:
        b.cleanup()
    best = {
        who: {step: round(args.rows / min(r[who][step] for r in rounds)) for step in STEPS}
        for who in ("ours", "dlt")
    }
    ceilings = {name: round(args.rows / min(r["ceilings"][name] for r in rounds)) for name in CEILINGS}
    result = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "rounds": args.rounds,
        "dlt": {"version": dlt.__version__, "backend": args.backend, "destination": "duckdb"},
        "rows_per_s": best,
        "ours_over_dlt": {step: round(best["ours"][step] / best["dlt"][step], 2) for step in STEPS},
        "our_ceilings_rows_per_s": ceilings,
        # Where dlt is faster than our Redis ceiling, no worker-side change reaches it: Redis's own work
        # per appended row (XADD and the dedup set) bounds first loads and changed rows.
        "ceiling_over_dlt": {
            "first_load": round(ceilings["redis_new_rows"] / best["dlt"]["first_load"], 2),
            "changed": round(ceilings["redis_new_rows"] / best["dlt"]["changed"], 2),
            "reread": round(
                min(ceilings["redis_duplicates"], ceilings["sql_read"]) / best["dlt"]["reread"], 2
            ),
        },
        "seconds_per_round": rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or "peer-dlt-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'rows/s':<12}{'ours':>10}{'dlt':>10}{'ours/dlt':>10}")
    for step in STEPS:
        print(
            f"{step:<12}{best['ours'][step]:>10,}{best['dlt'][step]:>10,}{result['ours_over_dlt'][step]:>10}"
        )
    print(f"{'ceiling':<12}{'ours':>10}{'':>10}{'ceiling/dlt':>12}")
    for step in STEPS:
        name = "redis_new_rows" if step != "reread" else "redis_duplicates"
        print(f"{step:<12}{ceilings[name]:>10,}{'':>10}{result['ceiling_over_dlt'][step]:>12}")
    print(f"\nwrote {args.out / (stem + '.json')}")
    return result


if __name__ == "__main__":
    run()
