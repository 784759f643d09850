"""The dedup rule, as the worker's precheck applies it; lua/lib.lua holds the same rule for the scripts.

A version is new when its pkey is not in ``seen``, its epoch is newer than the score there, or its
epoch equals the score but its digest differs. The scripts decide atomically; the precheck only
spares sending what they would drop, so it compares as they do (epochs as doubles, like Lua's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def new_flags(
    versions: Sequence[Any], scores: Sequence[float | bytes | None], stored: Sequence[bytes | None]
) -> list[bool]:
    """Per version (``epoch_us``, ``digest``), whether it may be new against the scores and digests read
    (a score as Redis writes it, text, or a float): one expression, as it runs for every re-read row."""
    return [
        score is None
        or (epoch := float(v.epoch_us)) > (last := float(score))
        or (epoch == last and digest != v.digest.encode())
        for v, score, digest in zip(versions, scores, stored, strict=True)
    ]
