"""The one error type a DAG author sees for bad input; it always says what to do."""

from __future__ import annotations


class DbStreamInputError(ValueError):
    """Bad input (SQL, columns, values, names): the cycle stops and the watermark stays put."""


class DbStreamRedisError(RuntimeError):
    """Redis refused or lost a call for good (memory, permission, outage): the cycle stops uncommitted."""


class LockLostError(DbStreamRedisError):
    """This cycle's lease on the stream expired or was taken over: it wrote nothing more."""


class RedisPermissionError(DbStreamRedisError):
    """The Redis user's ACL lacks a command or key the cycle needs."""
