"""Soft deletes: whether a row's ``deleted_column`` marks it deleted (a boolean or a timestamp)."""

from __future__ import annotations

from typing import Any

# Text that legacy schemas use for "not deleted" in a boolean-ish column (case-insensitive).
_LIVE_TEXT = frozenset({"", "0", "f", "false", "n", "no"})


def is_deleted(value: Any) -> bool:
    """NULL, false, 0 and their text forms mean live; anything else (true, a timestamp) means deleted."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and value == 0:
        return False
    return not (isinstance(value, str) and value.strip().lower() in _LIVE_TEXT)
