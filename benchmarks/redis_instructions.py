"""Redis's own instructions per row in the scripts (callgrind), the repeatable measure of a Lua change.

Starts a redis-server of its own on 127.0.0.1 under ``valgrind --tool=callgrind``, collecting only
inside EVALSHA, and counts per row, on ``--batches`` batches of 1,000 rows (~200-byte payloads):

  new        emit.lua, rows new to `seen` (a first load)
  changed    emit.lua, the same keys with newer epochs (every row updated)
  older      emit.lua, the same keys with older epochs (all duplicates)
  precheck   precheck.lua, the changed rows again (an unchanged window: all known)

``--against REV`` measures the scripts as they were at the git revision REV too (with that revision's
lua/lib.lua before them), each build on a server of its own. Seconds on this machine drift; these
counts do not. Every call's reply is checked (emitted and duplicates; the precheck leaves no row).
``--no-valgrind`` runs the same calls on a plain server, uncounted.

Run: ``.venv/bin/python benchmarks/redis_instructions.py [--against REV]`` (a minute per build).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import msgspec  # noqa: E402

from airflow_dbstream.core.rows import pack_rows, pack_versions  # noqa: E402
from airflow_dbstream.hooks.scripts import script_source  # noqa: E402

PAYLOAD = (
    b'{"id":1,"name":"Customer 1","email":"c1@ex.io","tier":"pro","balance":"1.37","country":"DE",'
    b'"active":true,"score":0.125,"since":"2020-01-02","updated_at":"2026-11-26T04:22:25.590083+00:00"}'
)
ROWS = 1000
EPOCH = 1_764_000_000_000_000
KEYS = ["{ri}:s", "{ri}:seen", "{ri}:digest"]


def batches(
    count: int, shift: int, version: int, *, payloads: bool = True, versions: bool = True
) -> list[bytes]:
    """``count`` packed batches of keys 0.., epochs EPOCH + shift + key, digests of ``version``: as
    emit.lua takes them, or without ``payloads`` as precheck.lua does. Without ``versions``, as the
    scripts before versions took them (the bare digest; the precheck: pkey, epoch, digest)."""
    out = []
    for b in range(count):
        keys = range(b * ROWS, (b + 1) * ROWS)
        pkeys = [str(k) for k in keys]
        epochs = [EPOCH + shift + k for k in keys]
        digests = [f"{version:08x}{k:024x}" for k in keys]
        if payloads:
            out.append(pack_rows(pkeys, epochs, digests, [PAYLOAD] * ROWS, versions=versions))
        elif versions:
            out.append(pack_versions(pkeys, epochs, digests))
        else:
            flat = [t for row in zip(pkeys, map(str, epochs), digests, strict=True) for t in row]
            out.append(msgspec.msgpack.encode(flat))
    return out


def at_revision(rev: str, name: str) -> str | None:
    def show(path: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(HERE.parent), "show", f"{rev}:{path}"], capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else None

    script = show(f"lua/{name}.lua")
    if script is None:
        return None
    shebang, text = ("", script) if not script.startswith("#!") else script.split("\n", 1)
    return (shebang and shebang + "\n") + (show("lua/lib.lua") or "") + text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(emit: str, precheck: str | None, count: int, valgrind: bool) -> dict[str, int]:
    """Instructions per row of each step (0 without valgrind), on a fresh server."""
    import redis

    port, workdir = free_port(), tempfile.mkdtemp(prefix="redis-instr-")
    out = os.path.join(workdir, "cg")
    server = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    if valgrind:
        server = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                  "--toggle-collect=evalGenericCommand", *server]  # fmt: skip
    process = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    client = redis.Redis(host="127.0.0.1", port=port)
    result: dict[str, int] = {}

    def step(name: str, run) -> None:
        if valgrind:
            subprocess.run(["callgrind_control", "-z", str(process.pid)], capture_output=True, check=True)
        run()
        if valgrind:
            subprocess.run(
                ["callgrind_control", "-d", name, str(process.pid)], capture_output=True, check=True
            )
            dump = max(glob.glob(out + ".*"), key=os.path.getmtime)
            lines = Path(dump).read_text().splitlines()
            total = next(int(line.split()[1]) for line in lines if line.startswith(("summary:", "totals:")))
            result[name] = round(total / (count * ROWS))
        else:
            result[name] = 0

    def emits(packed: list[bytes], expect: tuple[int, int]) -> None:
        for batch in packed:
            got = client.evalsha(sha, 3, *KEYS, "v1", 0, batch)
            assert tuple(got[:2]) == expect, (got, expect)

    try:
        for _ in range(300):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        sha = client.script_load(emit)
        versions = "is_version" in emit  # else a build that stored bare digests
        new, changed, older = (
            batches(count, s, v, versions=versions) for s, v in ((0, 1), (10**9, 2), (5, 3))
        )
        step("new", lambda: emits(new, (ROWS, 0)))
        step("changed", lambda: emits(changed, (ROWS, 0)))
        step("older", lambda: emits(older, (0, ROWS)))
        if precheck is not None:
            pre = client.script_load(precheck)
            known = batches(count, 10**9, 2, payloads=False, versions=versions)
            script_keys = KEYS[2:] if versions else KEYS[1:]  # precheck.lua read `seen` too before versions
            step(
                "precheck",
                lambda: [
                    client.evalsha(pre, len(script_keys), *script_keys, b) == [] or 1 / 0 for b in known
                ],
            )
    finally:
        client.shutdown(nosave=True)
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 rows per step")
    parser.add_argument("--against", metavar="REV", help="also measure the scripts at this git revision")
    parser.add_argument("--no-valgrind", action="store_true", help="check the calls only (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)
    builds = {"today": (script_source("emit"), script_source("precheck"))}
    if args.against:
        emit = at_revision(args.against, "emit")
        if emit is None:
            raise SystemExit(f"no lua/emit.lua at git revision {args.against!r}")
        builds[args.against] = (emit, at_revision(args.against, "precheck"))
    results = {name: measure(*texts, args.batches, not args.no_valgrind) for name, texts in builds.items()}
    steps = list(results["today"])
    print(f"Redis instructions per row ({args.batches} batches of {ROWS} rows):")
    print(f"  {'build':<14}" + "".join(f"{s:>11}" for s in steps))
    for name, figures in results.items():
        print(f"  {name:<14}" + "".join(f"{figures.get(s, 0):>11,}" for s in steps))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
