"""Where Redis spends its time per new row in lua/emit.lua: the script, then the script without one of
its commands, on the same batches; Redis's own per-call time (INFO commandstats), not the client's.

Run: ``.venv/bin/python benchmarks/emit_cost.py`` (a minute), or ``--rounds 1 --batches 2`` for a
smoke run. Each variant appends ``--batches`` batches of 1,000 new rows (~200-byte payloads) to a
fresh stream, so `seen` and `digest` grow as in a cycle; the keys are removed after each variant.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import uuid
from itertools import chain
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from airflow_dbstream.core.encoding import Message  # noqa: E402
from airflow_dbstream.hooks.scripts import script_source  # noqa: E402

PAYLOAD = (
    b'{"id":1,"name":"Customer 1","email":"c1@ex.io","tier":"pro","balance":"1.37","country":"DE",'
    b'"active":true,"score":0.125,"since":"2020-01-02","updated_at":"2026-11-26T04:22:25.590083+00:00"}'
)
READS = """  local s = redis.call('ZMSCORE', seen, unpack(pkeys, first, last))
  local d = redis.call('HMGET', digests, unpack(pkeys, first, last))
"""


def variants() -> dict[str, str]:
    source = script_source("emit")
    # The per-row XADD: from its `if maxlen > 0 then` to the matching `end`, read from emit.lua itself.
    xadd = re.search(r"^    if maxlen > 0 then\n.*?^    end\n", source, re.MULTILINE | re.DOTALL)
    cut = {
        "without the digest HSET": ("  redis.call('HSET', digests, unpack(sets, first, last))\n", ""),
        "without the ZADD to seen": ("  redis.call('ZADD', seen, unpack(adds, first, last))\n", ""),
        "without the ZMSCORE/HMGET reads": (READS, "  local s, d = {}, {}\n"),
        "without the XADD": (xadd.group(0) if xadd else "XADD block not found", ""),
    }
    found = {"emit.lua": source}
    for name, (text, instead) in cut.items():
        if text not in source:
            raise SystemExit(f"emit.lua changed: cannot make the variant {name!r}; update {__file__}")
        found[name] = source.replace(text, instead)
    return found


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
    args = parser.parse_args(argv)

    import redis

    client = redis.Redis(host=args.host, port=args.port)
    shas = {name: client.script_load(text) for name, text in variants().items()}
    spent: dict[str, list[float]] = {name: [] for name in shas}
    rows = 1000
    for _ in range(args.rounds):
        for name, sha in shas.items():
            tag = "{emit-cost:" + uuid.uuid4().hex[:8] + "}"
            usec = 0
            try:
                for batch in range(args.batches):
                    messages = [
                        Message(str(batch * rows + i), 1_764_000_000_000_000 + i, uuid.uuid4().bytes, PAYLOAD)
                        for i in range(rows)
                    ]
                    before = _evalsha_usec(client)
                    client.evalsha(sha, 3, tag, f"{tag}:seen", f"{tag}:digest", "v1", 0, *chain(*messages))
                    usec += _evalsha_usec(client) - before
            finally:
                client.unlink(tag, f"{tag}:seen", f"{tag}:digest")
            spent[name].append(usec / (args.batches * rows))
    result = {name: round(statistics.median(values), 2) for name, values in spent.items()}
    whole = result["emit.lua"]
    print(f"Redis CPU per new row (median of {args.rounds}, {args.batches} batches of {rows} rows each):")
    for name, value in result.items():
        share = "" if name == "emit.lua" else f"   (that part: ~{whole - value:.1f} us)"
        print(f"  {name:34} {value:6.2f} us{share}")
    return result


if __name__ == "__main__":
    main()
