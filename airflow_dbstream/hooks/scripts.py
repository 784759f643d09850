"""The Lua scripts' text, read from the wheel (or the checkout's top-level lua/ folder)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

SCRIPT_NAMES = ("emit", "commit", "trim", "delete", "sweep", "lease")
# Scripts that write what only the lock holder may write: run behind lua/fence.lua during a cycle.
FENCED_SCRIPTS = ("emit", "delete", "commit", "sweep")


@cache
def script_source(name: str) -> str:
    packaged = files("airflow_dbstream") / "lua" / f"{name}.lua"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent.parent / "lua" / f"{name}.lua"
    return checkout.read_text(encoding="utf-8")


@cache
def fenced_source(name: str) -> str:
    """The script behind lua/fence.lua: it runs only while the caller's token holds the stream's lock."""
    return script_source("fence") + script_source(name)
