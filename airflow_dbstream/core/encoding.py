"""Row encoding: each row's pkey, epoch and typed digest (core/digest.py), and the exact JSON payload
(orjson) of the rows to send. The README's "A message" says what the JSON of each type is."""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from airflow_dbstream.core.digest import Digester
from airflow_dbstream.core.epoch import UNIX_EPOCH, UTC_NAMES, microseconds_since, to_epoch_us
from airflow_dbstream.core.errors import BadRowError

if TYPE_CHECKING:
    from airflow_dbstream.core.spec import StreamSpec

_TEXTUAL = (Decimal, uuid.UUID, IPv4Address, IPv6Address, IPv4Network, IPv6Network, IPv4Interface,
            IPv6Interface)  # fmt: skip
_CONTAINERS = {list, tuple, set, frozenset, time}  # converted item by item: NaN, naive datetimes; timetz
_WHOLE_MINUTE_OFFSETS = datetime(1972, 2, 1, tzinfo=UTC)  # tzdata's last offset in seconds: Monrovia, 1972
_TZINFO = attrgetter("tzinfo")


class Unencodable(TypeError):
    """A value with no exact JSON form."""


class Version(NamedTuple):
    """What tells a row version apart, known before any JSON is written."""

    pkey: str
    epoch_us: int
    digest: bytes


class Versions(list):
    """A batch's versions, with the distinct value types of its rows when known (for ``payloads``)."""

    kinds: set[tuple[type, ...]] | None = None


class Message(NamedTuple):
    """One row version ready for the emit script; its fields are in the script's ARGV order."""

    pkey: str
    epoch_us: int
    digest: bytes
    payload: bytes


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration with exact microseconds, e.g. 'P1DT3723.5S' or '-PT0.000001S'."""
    days, micros = divmod(abs(value // timedelta(microseconds=1)), 86_400_000_000)
    text = "{}.{:06d}".format(*divmod(micros, 1_000_000)).rstrip("0").rstrip(".")
    return ("-" if value < timedelta(0) else "") + (f"P{days}DT{text}S" if days else f"PT{text}S")


def _is_utc(tz: Any) -> bool:
    return (
        tz.utcoffset(None) == timedelta(0)
        if isinstance(tz, timezone)
        else getattr(tz, "key", "") in UTC_NAMES
    )


class RowEncoder:
    """Encodes the rows of one query result; built once per cycle from the cursor's column names."""

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
        self._digester = Digester(self.columns, _TEXTUAL[2:])
        self._utc = _is_utc(self.tz)  # then orjson writes naive datetimes with +00:00 itself
        options = orjson.OPT_NON_STR_KEYS | (orjson.OPT_NAIVE_UTC if self._utc else 0)
        self._dumps = partial(orjson.dumps, default=self._default, option=options)
        self._zip = partial(zip, self.columns)

    def versions(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Version]:
        """Each row's (pkey, epoch, digest), in C-level maps where it can; a bad row raises, named."""
        try:
            digests, kinds = self._digester.many(rows)
            key_kinds = {t[i] for t in kinds for i in self._pkey_index}
            epochs = list(map(itemgetter(self._epoch_index), rows))
            if {t[self._epoch_index] for t in kinds} == {datetime} and None not in set(map(_TZINFO, epochs)):
                epochs_us: Any = microseconds_since(UNIX_EPOCH, epochs)
            else:
                epochs_us = [to_epoch_us(v, self.tz, self.epoch_unit) for v in epochs]
            keys = map(itemgetter(*self._pkey_index), rows)
            if len(self._pkey_index) > 1 and key_kinds <= {str, int}:  # a JSON array, as ``key`` writes it
                pkeys: Any = map(bytes.decode, map(orjson.dumps, keys))
            elif key_kinds == {str} or key_kinds == {int}:
                pkeys = keys if key_kinds == {str} else map(str, keys)
            else:
                raise TypeError("keys of other types are written one row at a time")
            versions = Versions(map(Version, pkeys, epochs_us, digests))
            versions.kinds = kinds
            return versions
        except Exception:  # the row-wise path names the problem, or gives the same versions
            return [self.version(row, n) for n, row in enumerate(rows, first_row_number)]

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
        versions: Sequence[Version],
        kinds: set[tuple[type, ...]] | None = None,
    ) -> list[bytes]:
        """The rows' JSON payloads, orjson writing a row at once; columns it would not write as specified
        (NaN, naive datetimes outside UTC, arrays, offsets in seconds) are converted first. ``kinds``:
        the rows' value types, as ``versions`` found them (a superset will do)."""
        kinds = kinds or set(map(tuple, map(partial(map, type), rows)))
        convert = [
            i
            for i, column_kinds in enumerate(map(set, zip(*kinds, strict=True)))
            if self._needs_converting(column_kinds, lambda i=i: list(map(itemgetter(i), rows)))
        ]
        if convert:
            columns = list(zip(*rows, strict=True))
            for i in convert:
                columns[i] = tuple(map(self._exact, columns[i]))
            rows = list(zip(*columns, strict=True))
        try:
            return list(map(self._dumps, map(dict, map(self._zip, rows))))
        except (TypeError, orjson.JSONEncodeError):  # a big integer; or a value to name
            return [self._payload(row, None, v.pkey) for row, v in zip(rows, versions, strict=True)]

    def encode(self, row: Sequence[Any], row_number: int) -> Message:
        version = self.version(row, row_number)
        return Message(*version, self._payload(row, row_number, version.pkey))

    def encode_batch(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Message]:
        versions = self.versions(rows, first_row_number)
        payloads = self.payloads(rows, versions, getattr(versions, "kinds", None))
        return [Message(*v, p) for v, p in zip(versions, payloads, strict=True)]

    def _needs_converting(self, kinds: set[type], column: Callable[[], list[Any]]) -> bool:
        """Whether orjson would write a column other than specified; its values are read only if needed."""
        if kinds & _CONTAINERS:
            return True
        if float not in kinds and datetime not in kinds:
            return False
        values = column()
        present = [v for v in values if v is not None] if type(None) in kinds else values
        floats = present if kinds <= {float, type(None)} else [v for v in present if type(v) is float]
        if not all(map(math.isfinite, floats)):
            return True
        if datetime not in kinds:
            return False
        datetimes = [v for v in present if type(v) is datetime] if len(kinds) > 1 else present
        zones = set(map(_TZINFO, datetimes))
        if None in zones and not self._utc:  # naive values get source_timezone's offset
            return True
        zones.discard(None)
        fixed = all(
            _is_utc(z) or (isinstance(z, timezone) and not z.utcoffset(None).seconds % 60) for z in zones
        )
        return not fixed and min(d for d in datetimes if d.tzinfo) < _WHOLE_MINUTE_OFFSETS

    def _exact(self, value: Any) -> Any:
        """A value in a form orjson writes as specified: NaN and ±Infinity as strings, datetimes and times
        as their ISO text (naive ones in source_timezone), big integers verbatim, containers item by item."""
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, datetime) and not value.tzinfo:
            value = value.replace(tzinfo=self.tz)
        if isinstance(value, datetime | time):
            return value.isoformat()
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            return orjson.Fragment(str(value))
        if isinstance(value, set | frozenset):
            value = sorted(value, key=repr)
        if isinstance(value, list | tuple):
            return [self._exact(v) for v in value]
        if isinstance(value, dict):
            return {k: self._exact(v) for k, v in value.items()}
        return value

    def _default(self, value: Any) -> Any:
        """orjson's hook: every other type gets one exact, stable text form."""
        if isinstance(value, _TEXTUAL):
            return str(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, timedelta):
            return iso_duration(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(value).decode("ascii")
        raise Unencodable(f"{type(value).__name__} value has no exact JSON form")

    def _payload(self, row: Sequence[Any], row_number: int | None, pkey: str) -> bytes:
        """One row's payload, each value converted first; a value with no exact JSON form is named."""
        values = list(map(self._exact, row))
        try:
            return self._dumps(dict(zip(self.columns, values, strict=True)))
        except (TypeError, orjson.JSONEncodeError):
            for column, original, value in zip(self.columns, row, values, strict=True):
                try:
                    self._dumps(value)
                except (TypeError, orjson.JSONEncodeError) as exc:
                    problem = (
                        exc.__cause__ or f"{type(original).__name__} value has no exact JSON form ({exc})"
                    )
                    raise self._row_error(
                        row_number, pkey, column, f"{problem}; cast it in the SQL (e.g. to text)"
                    ) from None
            raise

    def key(self, row: Sequence[Any], row_number: int) -> str:
        """The pkey string alone, in the form messages carry (the reconcile's key scan too)."""
        values = [row[i] for i in self._pkey_index]
        for column, value in zip(self.pkey_columns, values, strict=True):
            if value is None:
                raise self._row_error(row_number, None, column, "is NULL; a primary key cannot be NULL")
        if len(values) == 1 and type(values[0]) in (str, int):
            return str(values[0])
        try:
            text = self._dumps(self._exact(values if len(values) > 1 else values[0])).decode()
        except TypeError:  # orjson's JSONEncodeError, from _default's Unencodable
            for column, value in zip(self.pkey_columns, values, strict=True):
                try:
                    self._dumps(self._exact(value))
                except TypeError as exc:
                    problem = (
                        f"{exc.__cause__ or exc}, so it cannot be a pkey; cast it in the SQL (e.g. to text)"
                    )
                    raise self._row_error(row_number, None, column, problem) from None
            raise
        return text[1:-1] if len(values) == 1 and text.startswith('"') else text

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
