"""The exact JSON payload of a row (orjson), each type as the README's "A message" specifies it.

orjson writes a row's dict at once; what it would write otherwise (NaN and ±Infinity, naive datetimes
outside UTC, offsets in seconds, times with a zone, sets, integers beyond 64 bits) is converted first,
and only in the columns of a batch that hold it. A json/jsonb column read as ``JsonText`` (the
source's own text, never parsed) is embedded as it is.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from operator import attrgetter, itemgetter
from typing import Any

import orjson

from airflow_dbstream.core.epoch import UTC_NAMES

TEXTUAL = (Decimal, uuid.UUID, IPv4Address, IPv6Address, IPv4Network, IPv6Network, IPv4Interface,
           IPv6Interface)  # fmt: skip
_CONVERTED = {list, tuple, set, frozenset, time}  # item by item (NaN, naive datetimes) or to text
_WHOLE_MINUTE_OFFSETS = datetime(1972, 2, 1, tzinfo=UTC)  # tzdata's last offset in seconds: Monrovia, 1972
_TZINFO = attrgetter("tzinfo")


class Unencodable(TypeError):
    """A value with no exact JSON form; ``column`` names it where the row is known."""

    column: str | None = None


class JsonText(bytes):
    """A json/jsonb value as the source's own (valid JSON) text: embedded in payloads as it is."""


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration with exact microseconds, e.g. 'P1DT3723.5S' or '-PT0.000001S'."""
    days, micros = divmod(abs(value // timedelta(microseconds=1)), 86_400_000_000)
    text = "{}.{:06d}".format(*divmod(micros, 1_000_000)).rstrip("0").rstrip(".")
    return ("-" if value < timedelta(0) else "") + (f"P{days}DT{text}S" if days else f"PT{text}S")


def is_utc(tz: tzinfo | None) -> bool:
    if isinstance(tz, timezone):
        return tz.utcoffset(None) == timedelta(0)
    return getattr(tz, "key", "") in UTC_NAMES


def _whole_minutes(tz: tzinfo) -> bool:
    """Whether orjson writes every offset of the zone exactly (a zone's history may hold seconds)."""
    return is_utc(tz) or (isinstance(tz, timezone) and not tz.utcoffset(None).seconds % 60)


def _default(value: Any) -> Any:
    """orjson's hook: every type it does not know gets one exact, stable text form."""
    if isinstance(value, TEXTUAL):
        return str(value)
    if type(value) is JsonText:
        return orjson.Fragment(bytes(value))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise Unencodable(f"{type(value).__name__} value has no exact JSON form")


class PayloadEncoder:
    """Writes the payloads of one query's rows, naive datetimes read in ``tz`` (source_timezone)."""

    def __init__(self, columns: Sequence[str], tz: tzinfo) -> None:
        self.columns, self.tz, self._utc = [*columns], tz, is_utc(tz)
        option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_NAIVE_UTC if self._utc else 0)
        self.dumps = partial(orjson.dumps, default=_default, option=option)

    def payloads(
        self, rows: Sequence[Sequence[Any]], kinds: set[tuple[type, ...]] | None = None
    ) -> list[bytes]:
        """The rows' payloads. ``kinds``: the rows' value types where known (a superset will do)."""
        kinds = kinds or set(map(tuple, map(partial(map, type), rows)))
        column_kinds = enumerate(map(set, zip(*kinds, strict=True)))
        convert = [i for i, k in column_kinds if self._converts(k, rows, i)]
        if convert:
            columns = list(zip(*rows, strict=True))
            for i in convert:
                columns[i] = tuple(map(self.exact, columns[i]))
            rows = list(zip(*columns, strict=True))
        try:
            return [self.dumps(dict(zip(self.columns, row, strict=True))) for row in rows]
        except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits; or a value to name
            return list(map(self.payload, rows))

    def payload(self, row: Sequence[Any]) -> bytes:
        """One row's payload, every value converted; a value with no exact JSON form is named."""
        values = list(map(self.exact, row))
        try:
            return self.dumps(dict(zip(self.columns, values, strict=True)))
        except (TypeError, orjson.JSONEncodeError):
            for column, original, value in zip(self.columns, row, values, strict=True):
                try:
                    self.dumps(value)
                except (TypeError, orjson.JSONEncodeError) as exc:
                    cause, kind = exc.__cause__, type(original).__name__
                    error = cause if isinstance(cause, Unencodable) else Unencodable(f"{kind} value: {exc}")
                    error.column = column
                    raise error from None
            raise

    def _converts(self, kinds: set[type], rows: Sequence[Sequence[Any]], i: int) -> bool:
        """Whether orjson would write column ``i`` of the batch other than specified."""
        if kinds & _CONVERTED:
            return True
        if float not in kinds and datetime not in kinds:
            return False
        values = list(map(itemgetter(i), rows))
        if float in kinds and not all(math.isfinite(v) for v in values if type(v) is float):
            return True
        stamps = [v for v in values if type(v) is datetime]
        zones = set(map(_TZINFO, stamps))
        if None in zones and not self._utc:  # naive values get source_timezone's offset
            return True
        odd = {z for z in zones if z and not _whole_minutes(z)}
        return bool(odd) and min(v for v in stamps if v.tzinfo in odd) < _WHOLE_MINUTE_OFFSETS

    def exact(self, value: Any) -> Any:
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
            return [self.exact(v) for v in value]
        if isinstance(value, dict):
            return {k: self.exact(v) for k, v in value.items()}
        return value
