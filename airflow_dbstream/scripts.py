"""The Lua scripts' text, read from the wheel (or the checkout's top-level lua/ folder)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

SCRIPT_NAMES = ("emit", "commit", "trim", "delete", "sweep")


@cache
def script_source(name: str) -> str:
    packaged = files("airflow_dbstream") / "lua" / f"{name}.lua"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent / "lua" / f"{name}.lua"
    return checkout.read_text(encoding="utf-8")
