"""Dead letters: a row that failed its checks, as the message ``<tag>:dead`` carries (``on_bad_row``).

A bad row is identified by the text of its values (a digest of it), so a re-read of the same bad
version is recognised whether or not it has a usable key or epoch, and a fixed row is a new row.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

ON_BAD_ROW = ("fail", "dead_letter")


class DeadLetter(NamedTuple):
    """One bad row version ready for deadletter.lua; its fields are in the script's ARGV order."""

    identity: str  # hex digest of ``values``: the same bad version, read again, has the same one
    score_us: int  # its epoch, or the read's clock when it has none: trimmed as ``seen`` is
    error: str  # one sentence: the column and what is wrong with it
    column: str
    pkey: str  # '' when the row has no usable key
    epoch_us: str  # integer microseconds as text, '' when the row has no readable epoch
    values: str  # JSON object column -> str(value) (null for NULL), ASCII only


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    try:
        return str(value)
    except Exception:  # a driver type whose __str__ fails: the letter must still go out
        try:
            return repr(value)
        except Exception:
            return f"<{type(value).__name__} value that has no text form>"


def values_text(columns: Sequence[str], row: Sequence[Any]) -> str:
    """The row as a JSON object of column -> str(value) (bytes in base64, as payloads carry them);
    never raises."""
    record = {str(c): _text(v) for c, v in zip(columns, row, strict=False)}
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


def dead_letter(
    columns: Sequence[str],
    row: Sequence[Any],
    *,
    column: str,
    problem: str,
    pkey: str | None,
    epoch_us: int | None,
    read_us: int,
) -> DeadLetter:
    """The dead letter of one bad row; ``problem`` is the encoder's (e.g. "is NULL; a primary key ...")."""
    text = values_text(columns, row)
    identity = hashlib.blake2b(text.encode("ascii"), digest_size=16).hexdigest()
    return DeadLetter(
        identity=identity,
        score_us=read_us if epoch_us is None else epoch_us,
        error=f"Column {column!r} {problem}.",
        column=column,
        pkey=pkey or "",
        epoch_us="" if epoch_us is None else str(epoch_us),
        values=text,
    )
