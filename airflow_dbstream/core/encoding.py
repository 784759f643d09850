"""The exact JSON payload of a row (msgspec), each type as the README's "A message" specifies it.

msgspec writes a row at once, as a Struct made for the query's columns (no dict per row); what it
would write otherwise (NaN and ±Infinity, naive datetimes, offsets in seconds, durations, sets) is
converted first, and only in the columns of a batch that hold it. A json/jsonb column read as
``JsonText`` (the source's own text, never parsed) is embedded as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from itertools import starmap
from operator import attrgetter, itemgetter
from typing import Any

import msgspec

from airflow_dbstream.core.epoch import UTC_NAMES

TEXTUAL = (IPv4Address, IPv6Address, IPv4Network, IPv6Network, IPv4Interface, IPv6Interface)  # str()
_CONVERTED = {list, tuple, set, frozenset, timedelta}  # item by item (NaN, naive datetimes), or to text
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
    """Whether every offset of the zone is whole minutes (a zone's history may hold seconds)."""
    return is_utc(tz) or (isinstance(tz, timezone) and not tz.utcoffset(None).seconds % 60)


def _hook(value: Any) -> Any:
    """msgspec's hook, for the types it does not know."""
    if type(value) is JsonText:
        return msgspec.Raw(value)
    if isinstance(value, TEXTUAL):
        return str(value)
    raise Unencodable(f"{type(value).__name__} value has no exact JSON form")


class PayloadEncoder:
    """Writes the payloads of one query's rows, naive datetimes read in ``tz`` (source_timezone)."""

    def __init__(self, columns: Sequence[str], tz: tzinfo) -> None:
        self.columns, self.tz = [*columns], tz
        fields = [f"f{i}" for i in range(len(self.columns))]  # any column name, as the encoded name
        rename = dict(zip(fields, self.columns, strict=True))
        self._row = msgspec.defstruct("Row", fields, rename=rename, gc=False)  # untracked: it holds no cycle
        self.dumps = msgspec.json.Encoder(enc_hook=_hook).encode

    def payloads(self, rows: Sequence[Sequence[Any]], types: Sequence[set[type]]) -> list[bytes]:
        """The rows' payloads; ``types``: per column, the types of its values (a superset will do)."""
        convert = [(i, how) for i, t in enumerate(types) if (how := self._converter(t, rows, i))]
        if convert:
            columns = list(zip(*rows, strict=True))
            for i, how in convert:
                columns[i] = how(columns[i])
            rows = list(zip(*columns, strict=True))
        try:
            return list(map(self.dumps, starmap(self._row, rows)))
        except (TypeError, ValueError):  # a value to name
            return list(map(self.payload, rows))

    def payload(self, row: Sequence[Any]) -> bytes:
        """One row's payload, every value converted; a value with no exact JSON form is named."""
        try:
            return self.dumps(self._row(*map(self.exact, row)))
        except (TypeError, ValueError):
            for column, value in zip(self.columns, row, strict=True):
                try:
                    self.dumps(self.exact(value))
                except (TypeError, ValueError) as exc:
                    error = exc if isinstance(exc, Unencodable) else Unencodable(str(exc))
                    error.column = column
                    raise error from None
            raise

    def _converter(self, kinds: set[type], rows: Sequence[Sequence[Any]], i: int) -> Callable | None:
        """How column ``i`` of the batch is converted, if msgspec would write it other than specified."""
        if kinds & _CONVERTED:
            return self._exact
        if float not in kinds and datetime not in kinds:
            return None
        values = list(map(itemgetter(i), rows))
        floats = values if kinds == {float} else [v for v in values if type(v) is float]
        # a NaN or an infinity makes the sum non-finite (an overflow too: then each value is checked)
        if float in kinds and not math.isfinite(sum(floats)) and not all(map(math.isfinite, floats)):
            return self._exact
        stamps = values if kinds == {datetime} else [v for v in values if type(v) is datetime]
        zones = set(map(_TZINFO, stamps))
        odd = {z for z in zones if z is not None and not _whole_minutes(z)}
        if odd and min(v for v in stamps if v.tzinfo in odd) < _WHOLE_MINUTE_OFFSETS:
            return self._exact
        if None in zones:  # naive values get source_timezone's offset
            return self._aware if _whole_minutes(self.tz) else self._exact
        return None

    def _exact(self, values: Sequence[Any]) -> list[Any]:
        return list(map(self.exact, values))

    def _aware(self, values: Sequence[Any]) -> list[Any]:
        tz = self.tz
        return [v.replace(tzinfo=tz) if type(v) is datetime and v.tzinfo is None else v for v in values]

    def exact(self, value: Any) -> Any:
        """A value in a form msgspec writes as specified: NaN and ±Infinity as strings, naive datetimes in
        source_timezone, offsets in seconds and durations as ISO text, sets sorted, containers by item."""
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, datetime):
            value = value if value.tzinfo else value.replace(tzinfo=self.tz)
            offset = value.utcoffset()
            return value.isoformat() if offset.seconds % 60 or offset.microseconds else value
        if isinstance(value, timedelta):
            return iso_duration(value)
        if isinstance(value, set | frozenset):
            value = sorted(value, key=repr)
        if isinstance(value, list | tuple):
            return [self.exact(v) for v in value]
        if isinstance(value, dict):
            return {k: self.exact(v) for k, v in value.items()}
        return value
