"""How calls to Redis meet faults: redis-py's own Retry retries transient ones, this module names the rest.

Retrying is safe only because every call is idempotent: emit skips what ``seen`` already holds
(even when the lost reply was for a call that did run), commit only moves the watermark forward,
trim removes what is below a cutoff, and the lease script checks its token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from redis import exceptions as rx
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from airflow_dbstream.core.errors import DbStreamRedisError, LockLostError, RedisPermissionError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Retries of one call, about 1, 2, 4, 8 and 8 s apart: a Redis restart or a failover is ridden out.
RETRIES = 5
BACKOFF = ExponentialBackoff(cap=8.0, base=0.5)

# Connection lost, timeout, server still loading its AOF, cluster resharding or failing over.
TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.TryAgainError, rx.ReadOnlyError)

LOCK_LOST = "DBSTREAM_LOCK_LOST"


class LoggedRetry(Retry):
    """redis-py's Retry over TRANSIENT errors, saying each retry once; wrong credentials are not retried."""

    def __init__(self, retries: int = RETRIES) -> None:
        super().__init__(BACKOFF, retries, supported_errors=TRANSIENT)

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):  # type: ignore[override]
        def retryable(error: Exception) -> bool:
            return not isinstance(error, rx.AuthenticationError) and (
                is_retryable is None or is_retryable(error)
            )

        def failed(error: Exception, failures: int = 0) -> Any:
            if failures <= self._retries:
                log.warning(
                    "Redis call failed (%s: %s); retry %d of %d",
                    type(error).__name__,
                    error,
                    failures,
                    self._retries,
                )
            return fail(error, failures) if with_failure_count else fail(error)

        return super().call_with_retry(do, failed, retryable, with_failure_count=True)


def call(what: str, stream: str, fn: Callable[[], T], source: str | None = None) -> T:
    """Run one Redis call for ``stream`` (the client retries transient faults) and name what failed.

    ``source`` is the Lua text run, so that a refusal inside it can name the command.
    """
    try:
        return fn()
    except rx.AuthenticationError as exc:
        raise DbStreamRedisError(
            f"Stream {stream!r}: Redis refused the connection's credentials ({exc}). Check the login "
            "and password of the redis connection."
        ) from exc
    except TRANSIENT as exc:
        raise DbStreamRedisError(
            f"Stream {stream!r}: Redis did not answer the {what} call, retries included "
            f"({type(exc).__name__}: {exc}). Nothing was committed; rerun the cycle once Redis is "
            "back, it emits only what is missing."
        ) from exc
    except rx.ResponseError as exc:
        raise permanent_error(what, stream, exc, source) from exc


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
            "ACL listed in docs/reliability.md, section 'Least privilege' "
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
