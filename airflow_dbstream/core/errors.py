"""The one error type a DAG author sees for bad input; it always says what to do."""

from __future__ import annotations


class DbStreamInputError(ValueError):
    """Bad input (SQL, columns, values, names): the cycle stops and the watermark stays put."""


class BadRowError(DbStreamInputError):
    """One row failed its checks (a NULL key or epoch, an unreadable epoch, an unencodable value):
    ``on_bad_row="dead_letter"`` routes such a row to the dead-letter stream, any other error still fails."""

    def __init__(self, message: str, *, column: str, problem: str, pkey: str | None) -> None:
        super().__init__(message)
        self.column = column
        self.problem = problem  # "is NULL; every row needs its epoch", without the row or the stream
        self.pkey = pkey


class DbStreamRedisError(RuntimeError):
    """Redis refused or lost a call for good (memory, permission, outage): the cycle stops uncommitted."""


class LockLostError(DbStreamRedisError):
    """This cycle's lease on the stream expired or was taken over: it wrote nothing more."""


class RedisPermissionError(DbStreamRedisError):
    """The Redis user's ACL lacks a command or key the cycle needs."""
