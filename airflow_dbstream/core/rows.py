"""A query's rows as row versions and messages: each row's pkey, epoch and typed digest (core/digest.py),
checked and named when bad, and the payloads (core/encoding.py) of the rows to send."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from airflow_dbstream.core.digest import ColumnTypes, Digester, column_types
from airflow_dbstream.core.encoding import PayloadEncoder, Unencodable
from airflow_dbstream.core.epoch import UNIX_EPOCH, microseconds_since, to_epoch_us
from airflow_dbstream.core.errors import BadRowError

if TYPE_CHECKING:
    from airflow_dbstream.core.spec import StreamSpec

_TZINFO = attrgetter("tzinfo")
_CAST = "cast it in the SQL (e.g. to text)"


class Version(NamedTuple):
    """What tells a row version apart, known before any JSON is written."""

    pkey: str
    epoch_us: int
    digest: str  # core/digest.py's hexadecimal text


class Versions:
    """A batch's versions, column-wise (no object per row), with its columns' value types when known
    (for ``payloads``)."""

    __slots__ = ("digests", "epochs_us", "pkeys", "types")

    def __init__(
        self,
        pkeys: Sequence[str],
        epochs_us: Sequence[int],
        digests: Sequence[str],
        types: ColumnTypes | None = None,
    ) -> None:
        if not len(pkeys) == len(epochs_us) == len(digests):
            raise ValueError("a batch's pkeys, epochs and digests differ in number")
        self.pkeys, self.epochs_us, self.digests, self.types = pkeys, epochs_us, digests, types

    @classmethod
    def of(cls, versions: Sequence[Version]) -> Versions:
        """The versions of single rows, as one batch."""
        pkeys, epochs_us, digests = map(list, zip(*versions, strict=True)) if versions else ([], [], [])
        return cls(pkeys, epochs_us, digests)

    def __len__(self) -> int:
        return len(self.pkeys)

    def __getitem__(self, i: int) -> Version:
        """One row's version (iterating gives them all, as tests read them)."""
        return Version(self.pkeys[i], self.epochs_us[i], self.digests[i])

    def pick(self, positions: Sequence[int]) -> Versions:
        """The versions at ``positions`` (increasing), their value types kept (a superset will do)."""
        if len(positions) == len(self.pkeys):
            return self
        columns = (take(c, positions) for c in (self.pkeys, self.epochs_us, self.digests))
        return Versions(*columns, self.types)


def take(items: Sequence[Any], positions: Sequence[int]) -> Sequence[Any]:
    """The items at ``positions`` (increasing, distinct: the precheck's and a batch's parts'); all of
    them: ``items`` as they are."""
    return items if len(positions) == len(items) else [items[i] for i in positions]


class Message(NamedTuple):
    """One row version ready for the emit script; its fields in the order pack_rows writes them."""

    pkey: str
    epoch_us: int
    digest: str
    payload: bytes


Columns = tuple[Sequence[str], Sequence[int], Sequence[str], Sequence[bytes]]  # a batch, column-wise
_new_message = partial(tuple.__new__, Message)  # from a tuple, in C (NamedTuple's __new__ is Python)


def messages_of(versions: Versions, payloads: Sequence[bytes]) -> list[Message]:
    """The messages of versions and their payloads, made in C-level maps."""
    columns = versions.pkeys, versions.epochs_us, versions.digests, payloads
    return list(map(_new_message, zip(*columns, strict=True)))


def _epoch_texts(epochs: Sequence[int]) -> list[str]:
    """The epochs' integer texts, from one msgspec call."""
    return msgspec.json.encode(epochs)[1:-1].decode().split(",") if len(epochs) else []


def _pack(*columns: Iterable[str]) -> bytes:
    return msgspec.msgpack.encode(list(chain.from_iterable(zip(*columns, strict=True))))


def pack_rows(
    pkeys: Sequence[str],
    epochs: Sequence[int],
    thirds: Sequence[str],
    payloads: Sequence[bytes],
    *,
    versions: bool = True,
) -> bytes:
    """A batch as the emit scripts' one argument: a flat MessagePack array of pkey, epoch, version and
    payload per row, all text, for Redis's cmsgpack reads no binary type.

    ``thirds`` are the digests, sent as versions ``"<epoch>:<digest>"`` (what the hash ``digest``
    keeps per pkey, so an unchanged row is one text comparison in Redis); with ``versions=False``
    they go as they are (a replay's ops). redis-py would encode four arguments per row in Python (as
    much worker time as the script's Redis time); here the epochs' texts come from one msgspec call."""
    epoch_texts = _epoch_texts(epochs)
    if versions:
        thirds = list(map(":".join, zip(epoch_texts, thirds, strict=True)))
    return _pack(pkeys, epoch_texts, thirds, map(bytes.decode, payloads))


def pack_versions(pkeys: Sequence[str], epochs: Sequence[int], digests: Sequence[str]) -> bytes:
    """A batch as the precheck's one argument: pkey and version (``"<epoch>:<digest>"``) per row."""
    return _pack(pkeys, map(":".join, zip(_epoch_texts(epochs), digests, strict=True)))


class RowEncoder:
    """Reads the rows of one query result; built once per cycle from the cursor's column names."""

    def __init__(self, spec: StreamSpec, columns: Sequence[str]) -> None:
        spec.check_columns(columns)
        self.stream, self.tz, self.epoch_unit, self.columns = (
            spec.stream,
            spec.tz,
            spec.epoch_unit,
            [*columns],
        )
        self.deleted_index = None if spec.deleted_column is None else self.columns.index(spec.deleted_column)
        self.pkey_columns = list(spec.pkey_columns)
        self.epoch_column = spec.epoch_column or self.pkey_columns[0]  # a key scan reads no epoch
        self._pkey_index = [self.columns.index(c) for c in self.pkey_columns]
        self._epoch_index = self.columns.index(self.epoch_column)
        self._digester = Digester(self.columns)
        self._json = PayloadEncoder(self.columns, self.tz)

    def versions(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> Versions:
        """Each row's (pkey, epoch, digest), column-wise in C-level maps where it can; a bad row raises,
        named."""
        try:
            columns = list(zip(*rows, strict=True))
            types = column_types(columns)
            digests = self._digester.many(rows, columns, types)
            epochs = columns[self._epoch_index]
            if types[self._epoch_index] == {datetime} and None not in set(map(_TZINFO, epochs)):
                epochs_us: list[int] = list(microseconds_since(UNIX_EPOCH, epochs))
            else:
                epochs_us = [to_epoch_us(v, self.tz, self.epoch_unit) for v in epochs]
            key_types = set().union(*(types[i] for i in self._pkey_index))
            if len(self._pkey_index) > 1 and key_types <= {str, int}:  # a JSON array, as ``key`` writes it
                keys = zip(*(columns[i] for i in self._pkey_index), strict=True)
                pkeys: Sequence[str] = list(map(bytes.decode, map(self._json.dumps, map(list, keys))))
            elif key_types == {str}:
                pkeys = columns[self._pkey_index[0]]
            elif key_types == {int}:  # their decimal texts, written by one call
                pkeys = self._json.dumps(columns[self._pkey_index[0]])[1:-1].decode().split(",")
            else:
                raise TypeError("keys of other types are written one row at a time")
            return Versions(pkeys, epochs_us, digests, types)
        except Exception:  # the row-wise path names the problem, or gives the same versions
            return Versions.of([self.version(row, n) for n, row in enumerate(rows, first_row_number)])

    def version(self, row: Sequence[Any], row_number: int) -> Version:
        pkey = self.key(row, row_number)
        if row[self._epoch_index] is None:
            raise self._row_error(row_number, pkey, self.epoch_column, "is NULL; every row needs its epoch")
        try:
            epoch_us = to_epoch_us(row[self._epoch_index], self.tz, self.epoch_unit)
        except (TypeError, ValueError, ArithmeticError) as exc:
            problem = f"cannot be read as a modification time: {exc}"
            raise self._row_error(row_number, pkey, self.epoch_column, problem) from None
        try:
            return Version(pkey, epoch_us, self._digester.one(row))
        except (TypeError, ValueError, OverflowError):
            self._payload(row, row_number, pkey)  # names the column with no exact JSON form
            raise

    def payloads(
        self,
        rows: Sequence[Sequence[Any]],
        versions: Versions,
    ) -> list[bytes]:
        """The rows' JSON payloads, by their columns' value types as ``versions`` found them."""
        try:
            return self._json.payloads(rows, versions.types or column_types(zip(*rows, strict=True)))
        except Unencodable:
            return [self._payload(row, None, pkey) for row, pkey in zip(rows, versions.pkeys, strict=True)]

    def encode(self, row: Sequence[Any], row_number: int) -> Message:
        version = self.version(row, row_number)
        return Message(*version, self._payload(row, row_number, version.pkey))

    def encode_batch(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Message]:
        versions = self.versions(rows, first_row_number)
        payloads = self.payloads(rows, versions)
        return messages_of(versions, payloads) if rows else []

    def _payload(self, row: Sequence[Any], row_number: int | None, pkey: str) -> bytes:
        try:
            return self._json.payload(row)
        except Unencodable as exc:
            raise self._row_error(row_number, pkey, exc.column or "?", f"{exc}; {_CAST}") from None

    def key(self, row: Sequence[Any], row_number: int) -> str:
        """The pkey string alone, in the form messages carry (the reconcile's key scan too)."""
        values = [row[i] for i in self._pkey_index]
        for column, value in zip(self.pkey_columns, values, strict=True):
            if value is None:
                raise self._row_error(row_number, None, column, "is NULL; a primary key cannot be NULL")
        if len(values) == 1 and type(values[0]) in (str, int):
            return str(values[0])
        try:
            text = self._json.dumps(self._keyed(values if len(values) > 1 else values[0])).decode()
        except TypeError:  # the encoder's Unencodable
            for column, value in zip(self.pkey_columns, values, strict=True):
                try:
                    self._json.dumps(self._keyed(value))
                except TypeError as exc:
                    problem = f"{exc}, so it cannot be a pkey; {_CAST}"
                    raise self._row_error(row_number, None, column, problem) from None
            raise
        return text[1:-1] if len(values) == 1 and text.startswith('"') else text

    def _keyed(self, value: Any) -> Any:
        """A key value as pkeys write it: datetimes and times as isoformat (naive in source_timezone)."""
        if isinstance(value, list):
            return list(map(self._keyed, value))
        if isinstance(value, datetime) and not value.tzinfo:
            value = value.replace(tzinfo=self.tz)
        return value.isoformat() if isinstance(value, datetime | time) else self._json.exact(value)

    def _row_error(self, row_number: int | None, pkey: str | None, column: str, problem: str) -> BadRowError:
        where = ("the row" if row_number is None else f"row {row_number}") + (
            f" (pkey {pkey!r})" if pkey else ""
        )
        return BadRowError(
            f"Stream {self.stream!r}: column {column!r} of {where} {problem}. Nothing more was emitted "
            "and the watermark did not move; fix the data or the SQL and rerun the task (or set "
            'on_bad_row="dead_letter" to route such rows to the dead-letter stream).',
            column=column,
            problem=problem,
            pkey=pkey,
        )
