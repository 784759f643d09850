"""The typed digest of a row version: what tells two versions with the same epoch apart.

xxh3-128 over the row's values packed as MessagePack (msgspec), seeded by the column names and the
row's value types, so values whose JSON would read alike never collide: 1 / 1.0 / "1" / Decimal("1"),
a naive and an aware datetime, NULL and an absent column. It is computed from the values as read,
never from the JSON payload, so an unchanged row is recognised without being encoded; a json/jsonb
column read as its text (``JsonText``) is digested as that text.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import msgspec
import xxhash

from airflow_dbstream.core.encoding import TEXTUAL, JsonText

# The digest of a row version. Streams committed before format 1 have no format recorded: their digests
# were BLAKE2b of the payload. Format 1 held 16 raw bytes and digested json/jsonb columns as the
# driver's parsed objects; 2 holds the same hash as 32 hexadecimal characters (scripts take a batch as
# one MessagePack argument, and Redis's cmsgpack reads no binary type) and digests json/jsonb columns
# as their text.
FORMAT = "xxh3-128-hex:msgpack-typed:2"
# What `<tag>:digest` holds per pkey, recorded in `<tag>:state` (keys.DIGEST_FORMAT) by every committed
# cycle: the version last sent, "<epoch>:<digest>" (lua/lib.lua's is_version). Earlier builds kept the
# bare digest (the field then says FORMAT, or an older one, or nothing); lua/upgrade.lua rewrites those.
VERSIONS_FORMAT = "epoch:" + FORMAT
_BIG_INT, _TEXT, _JSON = 1, 2, 3  # MessagePack extension codes of values it has no type for
_INT64 = range(-(2**63), 2**64)  # the integers MessagePack holds as such


ColumnTypes = Sequence[set[type]]  # per column of a batch, the distinct types of its values


def column_types(columns: Sequence[Sequence[Any]]) -> list[set[type]]:
    """The ``ColumnTypes`` of a batch's columns (``zip(*rows)``)."""
    return [set(map(type, column)) for column in columns]


class Digester:
    """Digests the rows of one query result (its column names are part of every digest)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self._names = list(columns)
        self._seeds: dict[tuple[type, ...], int] = {}
        self._pack = msgspec.msgpack.Encoder(enc_hook=self._hook).encode

    def _hook(self, value: Any) -> Any:
        if type(value) is JsonText:
            return msgspec.msgpack.Ext(_JSON, bytes(value))
        if isinstance(value, TEXTUAL):  # the types MessagePack lacks with an exact text form (IP addresses)
            return msgspec.msgpack.Ext(_TEXT, str(value).encode())
        raise TypeError(f"{type(value).__name__} value has no exact JSON form")

    def _seed(self, types: tuple[type, ...]) -> int:
        seed = self._seeds.get(types)
        if seed is None:
            described = [self._names, [f"{t.__module__}.{t.__qualname__}" for t in types]]
            seed = self._seeds[types] = xxhash.xxh3_64_intdigest(self._pack(described))
        return seed

    def many(
        self, rows: Sequence[Sequence[Any]], columns: Sequence[Sequence[Any]], types: ColumnTypes
    ) -> list[str]:
        """Each row's digest, in C-level maps; ``columns`` are the rows' columns and ``types`` their value
        types (``column_types``). Raises where ``one`` is needed (sets, big integers)."""
        if any(set in t or frozenset in t for t in types):
            raise TypeError("sets are packed in order, one row at a time")
        kind = [next(iter(t)) if len(t) == 1 else None for t in types]
        mixed = [i for i, t in enumerate(types) if len(t) > 1]  # e.g. a NULLable column's None and int
        if not mixed:
            seeds: Any = repeat(self._seed(tuple(kind)))
        else:  # one type tuple per row, of the mixed columns only
            partial = list(zip(*(map(type, columns[i]) for i in mixed), strict=True))
            by_partial = {}
            for types_of_mixed in set(partial):
                for i, t in zip(mixed, types_of_mixed, strict=True):
                    kind[i] = t
                by_partial[types_of_mixed] = self._seed(tuple(kind))
            seeds = map(by_partial.__getitem__, partial)
        return list(map(xxhash.xxh3_128_hexdigest, map(self._pack, rows), seeds))

    def one(self, row: Sequence[Any]) -> str:
        """One row's digest; raises TypeError for a value with no exact JSON form."""
        values = [_tagged(v) for v in row]
        return xxhash.xxh3_128_hexdigest(self._pack(values), self._seed(tuple(map(type, row))))


def _tagged(value: Any) -> Any:
    if isinstance(value, int) and value not in _INT64:
        return msgspec.msgpack.Ext(_BIG_INT, str(value).encode())
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return value
