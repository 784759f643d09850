"""The Lua scripts' text, read from the wheel (or the checkout's top-level lua/ folder).

A Redis script can neither require another nor define globals, so what several scripts share is
prepended: lua/lib.lua's local functions to the scripts that call them, and lua/fence.lua first of
all when a script runs fenced. A ``#!lua`` shebang line of a script stays its first line.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

SCRIPT_NAMES = (
    "emit", "commit", "trim", "delete", "sweep", "lease", "replay", "reset", "deadletter", "precheck",
    "upgrade",
)  # fmt: skip
# Scripts that write what only the lock holder may write: run behind lua/fence.lua during a cycle.
FENCED_SCRIPTS = ("emit", "delete", "commit", "sweep", "replay", "reset", "deadletter", "upgrade")
# Scripts that call lua/lib.lua's functions (xadd, is_new, known, below, forget): it is prepended to them.
LIB_SCRIPTS = ("emit", "delete", "trim", "sweep", "replay", "deadletter", "precheck", "upgrade")


@cache
def script_file(name: str) -> str:
    """lua/<name>.lua as stored, without what is prepended to it."""
    packaged = files("airflow_dbstream") / "lua" / f"{name}.lua"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent.parent / "lua" / f"{name}.lua"
    return checkout.read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """The text sent to Redis for the script ``name``: Redis's ``@user_script:N`` counts its lines."""
    return _assemble(name, fenced=False)


@cache
def fenced_source(name: str) -> str:
    """The script behind lua/fence.lua: it runs only while the caller's token holds the stream's lock."""
    return _assemble(name, fenced=True)


def _assemble(name: str, *, fenced: bool) -> str:
    text = script_file(name)
    shebang = ""
    if text.startswith("#!"):  # e.g. `#!lua flags=allow-oom`: Redis reads flags from line 1 only
        shebang, _, text = text.partition("\n")
        shebang += "\n"
    prepended = (["fence"] if fenced else []) + (["lib"] if name in LIB_SCRIPTS else [])
    for part in prepended:
        if script_file(part).startswith("#!") or not script_file(part).endswith("\n"):
            raise ValueError(f"lua/{part}.lua is prepended to other scripts: no shebang, and a final newline")
    return shebang + "".join(script_file(part) for part in prepended) + text
