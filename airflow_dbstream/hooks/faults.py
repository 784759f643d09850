"""How calls to Redis meet faults: transient ones retried with backoff, permanent ones fail fast.

Retrying is safe only because every call is idempotent: emit skips what ``seen`` already holds
(even when the lost reply was for a call that did run), commit only moves the watermark forward,
trim removes what is below a cutoff, and the lease script checks its token.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from redis import exceptions as rx

from airflow_dbstream.core.errors import DbStreamRedisError, LockLostError, RedisPermissionError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Seconds between attempts once redis-py's own reconnect retries (about 5 s) are exhausted.
RETRY_DELAYS: Sequence[float] = (1.0, 2.0, 4.0, 8.0)

# Connection lost, timeout, server still loading its AOF, cluster resharding or failing over.
TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.TryAgainError, rx.ReadOnlyError)

LOCK_LOST = "DBSTREAM_LOCK_LOST"


def call(
    what: str,
    stream: str,
    fn: Callable[[], T],
    delays: Sequence[float] | None = None,
    source: str | None = None,
) -> T:
    """Run one idempotent Redis call for ``stream``, retrying transient faults with backoff.

    ``source`` is the Lua text run, so that a refusal inside it can name the command.
    """
    delays = RETRY_DELAYS if delays is None else delays
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except rx.AuthenticationError as exc:
            raise DbStreamRedisError(
                f"Stream {stream!r}: Redis refused the connection's credentials ({exc}). Check the login "
                "and password of the redis connection."
            ) from exc
        except TRANSIENT as exc:
            if attempt == len(delays):
                raise DbStreamRedisError(
                    f"Stream {stream!r}: Redis did not answer the {what} call after {attempt + 1} attempts "
                    f"({type(exc).__name__}: {exc}). Nothing was committed; rerun the cycle once Redis is "
                    "back, it emits only what is missing."
                ) from exc
            log.warning(
                "Stream %s: %s call failed (%s: %s); retry %d of %d in %.1f s",
                stream, what, type(exc).__name__, exc, attempt + 1, len(delays), delays[attempt],
            )  # fmt: skip
            time.sleep(delays[attempt])
        except rx.ResponseError as exc:
            raise permanent_error(what, stream, exc, source) from exc
    raise AssertionError("unreachable")


def permanent_error(what: str, stream: str, exc: rx.ResponseError, source: str | None = None) -> Exception:
    """Name what Redis refused and what to do; unknown errors pass through unchanged."""
    text = str(exc)
    if "can't run this command" in text or "no permissions to access" in text:
        text = f"{text} -> {_commands_at(text, source)}"
        exc = rx.NoPermissionError(text)
    if LOCK_LOST in text:
        return LockLostError(
            f"Stream {stream!r}: this cycle's lock expired or another cycle took it over before the {what} "
            "call, so the call wrote nothing. The cycle stops without moving the watermark; the cycle now "
            "holding the lock carries on. If batches take longer than lock_lease, raise lock_lease."
        )
    if isinstance(exc, rx.OutOfMemoryError) or text.startswith("OOM") or "OOM command not allowed" in text:
        return DbStreamRedisError(
            f"Stream {stream!r}: Redis refused the {what} call (OOM): it is at its maxmemory limit, so XADD "
            "cannot append. Cap the stream with the operator's `maxlen` (XADD MAXLEN ~), have consumers "
            "trim what they have acknowledged (XTRIM), or raise maxmemory. Nothing was committed; rerun "
            "the cycle once Redis has room."
        )
    if isinstance(exc, rx.NoPermissionError) or "NOPERM" in text:
        return RedisPermissionError(
            f"Stream {stream!r}: the Redis user may not run what the {what} call needs ({text}). Grant the "
            "ACL listed in README.md, section 'Least privilege' "
            "(airflow_dbstream.core.acl.REQUIRED_COMMANDS), on this stream's keys."
        )
    return exc


def _commands_at(text: str, source: str | None) -> str:
    """Inside a script Redis names only the line it refused (@user_script:N); find its command."""
    line = re.search(r"@user_script:(\d+)", text)
    if not line or source is None:
        return "see the ACL below"
    lines = source.splitlines()
    number = int(line.group(1))
    code = lines[number - 1] if 0 < number <= len(lines) else ""
    commands = [c.lower() for c in re.findall(r"redis\.call\('(\w+)'", code)]
    return " and ".join(f"the '{c}' command" for c in commands) or "see the ACL below"
