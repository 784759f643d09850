"""Instructions per row of the worker's stages, by valgrind's callgrind (timing drifts here, counts don't).

On the benchmark's rows (benchmarks/bench.py's table: 10 columns, ~150-byte payload), in one process:

  fetch     psycopg's named cursor, fetchmany per batch, as the Postgres source reads
  digest    the (pkey, epoch, digest) of each row: what an unchanged row costs the worker besides fetch
  encode    the JSON payload of each row: what only rows that may be new cost
  send      the emit call's worker side, the rows all new: the batch packed (pack_rows), redis-py's
            EVALSHA of emit.lua, its reply (Redis's own time is another process's)
  compare   the precheck of an unchanged window: the versions packed, precheck.lua's call (the rule runs in
            Redis) and its reply (no row left)

Run: ``.venv/bin/python benchmarks/instructions.py`` (20,000 rows, about a minute); it makes the table,
runs itself under ``valgrind --tool=callgrind``, prints instructions per row and removes what it made.
Each stage is called through a C function (ctypes -> libffi's ``ffi_call``) so that callgrind collects
only inside it (``--toggle-collect=ffi_call``) and writes one count per stage (``--dump-after``).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.bench import CREATE, FILL  # noqa: E402  (the benchmark's own table)

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
STAGES = ("fetch", "digest", "encode", "send", "compare")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows read (default 20000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per fetch and per encode call")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # the table, under valgrind
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ under valgrind


def measured(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` inside a C call (libc's bsearch calling back), the one place callgrind collects."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    libc.bsearch.restype = ctypes.c_void_p
    libc.bsearch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, compare]
    out: list[Any] = []

    def call(_a: Any, _b: Any) -> int:
        out.append(fn())
        return 0

    key = ctypes.c_int(0)
    libc.bsearch(ctypes.byref(key), ctypes.byref(key), 1, ctypes.sizeof(key), compare(call))
    return out[0]


def child(table: str, batch_size: int) -> None:
    import psycopg
    import redis

    from airflow_dbstream.core.keys import StreamKeys
    from airflow_dbstream.core.rows import RowEncoder, pack_rows, pack_versions
    from airflow_dbstream.core.spec import StreamSpec
    from airflow_dbstream.hooks.scripts import script_source

    db = psycopg.connect(DSN)
    db.execute("SELECT set_config('TimeZone', 'UTC', false)")
    db.commit()

    def fetch() -> tuple[list[str], list[list[Any]]]:
        batches = []
        with closing(db.cursor(name=f"instr_{uuid.uuid4().hex}")) as cursor:
            cursor.execute(f"SELECT * FROM {table} WHERE updated_at >= %(window_start)s",
                           {"window_start": datetime(1, 1, 2, tzinfo=UTC)})  # fmt: skip
            while rows := cursor.fetchmany(batch_size):
                batches.append(rows)
            columns = [d[0] for d in cursor.description]
        return columns, batches

    measured(lambda: None)  # the marker's own cost, subtracted from each stage
    columns, batches = measured(fetch)
    spec = StreamSpec(stream="instr", sql="", pkey_column="id", epoch_column="updated_at",
                      lookback=timedelta(minutes=15), variant="instr.v1")  # fmt: skip
    encoder = RowEncoder(spec, columns)
    starts = [1 + sum(map(len, batches[:i])) for i in range(len(batches))]
    versions = measured(lambda: [encoder.versions(b, n) for b, n in zip(batches, starts, strict=True)])
    payloads = measured(lambda: [encoder.payloads(b, v) for b, v in zip(batches, versions, strict=True)])

    # send: as RedisStreamHook.emit sends a batch of new rows (the hook imports Airflow: not here)
    keys = StreamKeys.for_stream(f"instr:{uuid.uuid4().hex[:8]}")
    client = redis.Redis(host="127.0.0.1", port=6379)
    emit = client.register_script(script_source("emit"))
    script_keys = [keys.stream, keys.seen, keys.digest]
    emit(keys=script_keys, args=["instr.v1", 0, pack_rows(["0"], [0], [""], [b"{}"])])  # loaded, warm
    sent = [(v.pkeys, v.epochs_us, v.digests, p) for v, p in zip(versions, payloads, strict=True)]

    def send() -> int:
        return sum(emit(keys=script_keys, args=["instr.v1", 0, pack_rows(*c)])[0] for c in sent)

    try:
        assert measured(send) == sum(map(len, versions))
        # compare: the window is unchanged, so `seen` and `digest` hold exactly these versions
        precheck = client.register_script(script_source("precheck"))

        def compare() -> int:  # what RedisStreamHook.may_be_new does (the hook imports Airflow: not here)
            left = 0
            for batch in versions:
                assert len(set(batch.pkeys)) == len(batch)  # as may_be_new checks (no pkey repeats)
                packed = pack_versions(batch.pkeys, batch.epochs_us, batch.digests)
                left += len(precheck(keys=[keys.digest], args=[packed]))
            return left

        assert measured(compare) == 0
    finally:
        client.unlink(keys.stream, keys.seen, keys.digest)
    db.close()


# ---------------------------------------------------------------------------------------- parent


def counts(folder: Path) -> list[int]:
    """The instruction totals of callgrind's dumps, in the order they were written (one per stage)."""
    parts = sorted(folder.glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    totals = []
    for part in parts:
        for line in part.read_text().splitlines():
            if line.startswith("totals:"):
                totals.append(int(line.split()[1]))
    return totals


@contextmanager
def bench_table(rows: int, prefix: str) -> Iterator[str]:
    """bench.py's table of ``rows`` rows (an index on its epoch column) in this machine's Postgres."""
    import psycopg

    table = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as db:
        db.execute(CREATE.format(t=table))
        db.execute(FILL.format(t=table), {"n": rows, "span": 3600})
        db.execute(f"CREATE INDEX ON {table} (updated_at)")
        db.execute(f"VACUUM ANALYZE {table}")
        try:
            yield table
        finally:
            db.execute(f"DROP TABLE IF EXISTS {table}")


def callgrind(options: list[str], command: list[str], *, valgrind: bool = True) -> list[int]:
    """Run ``command`` under callgrind with these options: the instruction totals of its dumps."""
    with tempfile.TemporaryDirectory() as tmp:
        tool = ["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={tmp}/cg.out"]
        done = subprocess.run(
            [*(tool if valgrind else []), *command],
            capture_output=True,
            text=True,
            env=os.environ | {"PYTHONHASHSEED": "0"},
        )
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
        return counts(Path(tmp))


def run(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        child(args.child, args.batch_size)
        return {}
    with bench_table(args.rows, "instr") as table:
        options = ["--collect-atstart=no", "--toggle-collect=ffi_call", "--dump-after=ffi_call"]
        command = [sys.executable, __file__, "--child", table, "--batch-size", str(args.batch_size)]
        marker, *totals = callgrind(options, command)
    if len(totals) != len(STAGES):
        raise SystemExit(f"expected {len(STAGES)} counts after the marker's, got {totals}")
    per_row = {
        stage: round((total - marker) / args.rows) for stage, total in zip(STAGES, totals, strict=True)
    }
    result = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "instructions_per_row": per_row,
        "unchanged_row": per_row["fetch"] + per_row["digest"] + per_row["compare"],
        "changed_row": per_row["fetch"] + per_row["digest"] + per_row["encode"],
        "changed_row_sent": per_row["fetch"] + per_row["digest"] + per_row["encode"] + per_row["send"],
    }
    print(
        f"instructions per row ({args.rows:,} rows of benchmarks/bench.py's table, "
        f"batches of {args.batch_size:,})"
    )
    for stage in STAGES:
        print(f"  {stage:10} {per_row[stage]:>10,}")
    print(f"  {'unchanged row (fetch + digest + compare)':44} {result['unchanged_row']:>10,}")
    print(f"  {'changed row (fetch + digest + encode)':44} {result['changed_row']:>10,}")
    print(f"  {'changed row, sent (+ send)':44} {result['changed_row_sent']:>10,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    run()
