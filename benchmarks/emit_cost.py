"""Where Redis spends its time per new row in lua/emit.lua: the script, then the script without one of
its commands, on the same batches; Redis's own per-call time (INFO commandstats), not the client's.

Run: ``.venv/bin/python benchmarks/emit_cost.py`` (a minute), or ``--rounds 1 --batches 2`` for a
smoke run. Each variant appends ``--batches`` batches of 1,000 new rows (~200-byte payloads) to a
fresh stream, so `seen` and `digest` grow as in a cycle; the keys are removed after each variant.
The variants take turns within each round, so a drift of the machine's speed hits them alike.

``--against REV`` adds emit.lua as it was at the git revision REV (with that revision's lua/lib.lua
before it, when it has one) and prints its cost beside today's, round by round.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import uuid
from itertools import chain
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from airflow_dbstream.core.rows import Message, pack_rows  # noqa: E402
from airflow_dbstream.hooks.scripts import script_source  # noqa: E402

PAYLOAD = (
    b'{"id":1,"name":"Customer 1","email":"c1@ex.io","tier":"pro","balance":"1.37","country":"DE",'
    b'"active":true,"score":0.125,"since":"2020-01-02","updated_at":"2026-11-26T04:22:25.590083+00:00"}'
)
# The reads: HMGET of every row's stored version.
READS = """    local d = redis.call('HMGET', digests, unpack(pkeys, first, last))
"""


def variants() -> dict[str, str]:
    source = script_source("emit")  # as sent to Redis: lib.lua's functions, then emit.lua
    # The per-row XADD: emit.lua's call of lib.lua's xadd(), read from the script itself.
    xadd = re.search(r"^    xadd\(stream, maxlen, .*\)\n", source, re.MULTILINE)
    cut = {
        "without the digest HSET": ("  redis.call('HSET', digests, unpack(sets, first, last))\n", ""),
        "without the ZADD to seen": ("  redis.call('ZADD', seen, unpack(adds, first, last))\n", ""),
        "without the HMGET reads": (READS, "    local d = {}\n"),
        "without the XADD": (xadd.group(0) if xadd else "XADD block not found", ""),
    }
    found = {"emit.lua": source}
    for name, (text, instead) in cut.items():
        if text not in source:
            raise SystemExit(f"emit.lua changed: cannot make the variant {name!r}; update {__file__}")
        found[name] = source.replace(text, instead)
    return found


def at_revision(rev: str) -> str:
    """emit.lua at the git revision ``rev``, behind that revision's lua/lib.lua when it has one."""

    def show(path: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(HERE.parent), "show", f"{rev}:{path}"], capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else None

    emit = show("lua/emit.lua")
    if emit is None:
        raise SystemExit(f"no lua/emit.lua at git revision {rev!r}")
    return (show("lua/lib.lua") or "") + emit


def _evalsha_usec(client) -> int:
    """Redis's total time in EVALSHA so far (a difference of two readings: other clients' calls would
    count too, so run it against a quiet Redis)."""
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--rounds", type=int, default=8, help="times each variant is measured (median)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 rows per measurement")
    parser.add_argument(
        "--against", metavar="REV", help="also measure emit.lua as it was at this git revision"
    )
    args = parser.parse_args(argv)

    import redis

    client = redis.Redis(host=args.host, port=args.port)
    texts = variants()
    then = f"emit.lua at {args.against}" if args.against else None
    if then:  # measured next to emit.lua, each first in every other round
        texts = {"emit.lua": texts.pop("emit.lua"), then: at_revision(args.against), **texts}
    shas = {name: client.script_load(text) for name, text in texts.items()}
    packed = {name: "cmsgpack.unpack(ARGV[3])" in text for name, text in texts.items()}
    spent: dict[str, list[float]] = {name: [] for name in shas}
    rows = 1000
    for round_ in range(args.rounds):
        order = list(shas.items())
        if then and round_ % 2:
            order[0], order[1] = order[1], order[0]
        for name, sha in order:
            tag = "{emit-cost:" + uuid.uuid4().hex[:8] + "}"
            usec = 0
            try:
                for batch in range(args.batches):
                    messages = [
                        Message(str(batch * rows + i), 1_764_000_000_000_000 + i, uuid.uuid4().hex, PAYLOAD)
                        for i in range(rows)
                    ]
                    # today's scripts take the batch as one MessagePack argument; earlier ones, per row
                    rows_args = (
                        [pack_rows(*zip(*messages, strict=True))] if packed[name] else chain(*messages)
                    )
                    before = _evalsha_usec(client)
                    client.evalsha(sha, 3, tag, f"{tag}:seen", f"{tag}:digest", "v1", 0, *rows_args)
                    usec += _evalsha_usec(client) - before
            finally:
                client.unlink(tag, f"{tag}:seen", f"{tag}:digest")
            spent[name].append(usec / (args.batches * rows))
    result = {name: round(statistics.median(values), 2) for name, values in spent.items()}
    whole = result["emit.lua"]
    print(f"Redis CPU per new row (median of {args.rounds}, {args.batches} batches of {rows} rows each):")
    for name, value in result.items():
        share = "" if name in ("emit.lua", then) else f"   (that part: ~{whole - value:.1f} us)"
        print(f"  {name:34} {value:6.2f} us{share}")
    if then:
        ratios = sorted(new / old for new, old in zip(spent["emit.lua"], spent[then], strict=True))
        print(
            f"  emit.lua / {then}, round by round: median {statistics.median(ratios):.3f} "
            f"(from {ratios[0]:.3f} to {ratios[-1]:.3f})"
        )
    return result


if __name__ == "__main__":
    main()
