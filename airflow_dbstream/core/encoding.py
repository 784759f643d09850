"""Row encoding: the exact, deterministic JSON payload of a row, its pkey string and its digest."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from itertools import repeat
from json.encoder import encode_basestring
from operator import add, attrgetter, floordiv, methodcaller, mod, sub
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_dbstream.core.epoch import (
    ONE_MICROSECOND,
    UNIX_EPOCH,
    UTC_NAMES,
    microseconds_since,
    to_epoch_us,
)
from airflow_dbstream.core.errors import BadRowError, DbStreamInputError

if TYPE_CHECKING:
    from airflow_dbstream.core.spec import StreamSpec

_STRINGIFIED = (Decimal, uuid.UUID, IPv4Address, IPv6Address, IPv4Network, IPv6Network, IPv4Interface,
                IPv6Interface)  # fmt: skip


class Unencodable(TypeError):
    """A value with no exact JSON form."""


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration with exact microseconds, e.g. 'P1DT3723.5S' or '-PT0.000001S'."""
    total = value // timedelta(microseconds=1)
    sign = "-" if total < 0 else ""
    days, micros = divmod(abs(total), 86_400_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"{sign}P{days}DT{text}S" if days else f"{sign}PT{text}S"


def make_default(tz: tzinfo):
    """The json ``default`` hook: every non-JSON type gets one exact, stable text form."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=tz)).isoformat()
        if isinstance(value, date | time):
            return value.isoformat()
        if isinstance(value, timedelta):
            return iso_duration(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, _STRINGIFIED):
            return str(value)
        if isinstance(value, tuple | set | frozenset):
            return list(value) if isinstance(value, tuple) else sorted(value, key=repr)
        raise Unencodable(f"{type(value).__name__} value has no exact JSON form")

    return default


def _quoted(text_of: Callable[[Any], str]) -> Callable[[Iterable[Any]], Iterator[str]]:
    return lambda values: map(encode_basestring, map(text_of, values))


# Exact types and the JSON texts the json encoder (with make_default's hook) writes for a column of
# them, made by C-level maps; float is for finite values only (encode_batch checks).
_COLUMN_TEXTS: dict[type, Callable[[Iterable[Any]], Iterator[str]]] = {
    str: partial(map, encode_basestring),
    int: partial(map, int.__repr__),
    bool: partial(map, {True: "true", False: "false"}.__getitem__),
    float: partial(map, float.__repr__),
    Decimal: _quoted(str),
    uuid.UUID: _quoted(str),
    date: _quoted(date.isoformat),
    datetime: _quoted(datetime.isoformat),  # aware values only (encode_batch checks)
}
_TZINFO = attrgetter("tzinfo")
_DIGEST = methodcaller("digest")
_BLAKE2B_128 = partial(hashlib.blake2b, digest_size=16)
_NAIVE_EPOCH = datetime(1970, 1, 1)
# Kinds whose JSON text is the quoted str() / isoformat() of the value, never with a character to escape:
# their quotes go in the row template, not through encode_basestring.
_PLAIN_QUOTED: dict[type, Callable[[Any], str]] = {
    Decimal: str,
    uuid.UUID: str,
    date: date.isoformat,
    datetime: datetime.isoformat,  # aware values only (encode_batch checks)
}
_FRACTION = ".%06d".__mod__


def fixed_offset(tz: tzinfo) -> timedelta | None:
    """The one UTC offset of a zone that never changes it (UTC and fixed offsets), else None."""
    if isinstance(tz, timezone):
        return tz.utcoffset(None)
    if getattr(tz, "key", None) in UTC_NAMES:  # zoneinfo.ZoneInfo("UTC") and its aliases
        return timedelta(0)
    return None


def iso_offset(offset: timedelta) -> str:
    """The offset as datetime.isoformat writes it: '+00:00', '-05:30', '+05:30:15'."""
    return datetime(2000, 1, 1, tzinfo=timezone(offset)).isoformat()[19:]


def _one_shot_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """Compact, exact JSON: the stdlib's C encoder made once, not once per call as ``JSONEncoder.encode``
    does. Falls back to ``JSONEncoder.encode`` (same text) where the C encoder is not available."""
    encoder = json.JSONEncoder(default=default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encode_basestring is not getattr(json.encoder, "c_encode_basestring", None):
        return encoder.encode
    try:
        c_encode = make(None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False)

        def dumps(value: Any) -> str:
            return "".join(c_encode(value, 0))

        probe = {"a": [1, 2.5, 'é"\n', None, True, {"b": 10**30}], "c": Decimal("1.10")}
        if dumps(probe) == encoder.encode(probe):
            return dumps
    except (TypeError, ValueError):
        pass
    return encoder.encode


def _memo(
    texts: Callable[[Iterable[Any]], Iterator[str]], distinct: Iterable[Any]
) -> Callable[[Iterable[Any]], Iterator[str]]:
    """``texts`` for a column of few distinct values: each value's text made once, then looked up."""
    distinct = list(distinct)
    lookup = dict(zip(distinct, texts(distinct), strict=True))
    return partial(map, lookup.__getitem__)


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: such floats become the strings 'NaN', 'Infinity', '-Infinity'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Message(NamedTuple):
    """One row version ready for the emit script; its fields are in the script's ARGV order."""

    pkey: str
    epoch_us: int
    digest: bytes
    payload: bytes


class RowEncoder:
    """Encodes the rows of one query result; built once per cycle from the cursor's column names."""

    def __init__(self, spec: StreamSpec, columns: Sequence[str]) -> None:
        stream, tz = spec.stream, spec.tz
        self.stream = stream
        self.columns = list(columns)
        needed = [*spec.pkey_columns, *([spec.epoch_column] if spec.epoch_column else [])]
        missing = [c for c in needed if c not in self.columns]
        if missing:
            raise DbStreamInputError(
                f"Stream {stream!r}: the query returned no column {', '.join(map(repr, missing))}; "
                f"it returned {self.columns}. Select the key and epoch columns, or fix pkey_column / "
                "epoch_column (names are case-sensitive)."
            )
        if len(set(self.columns)) != len(self.columns):
            dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise DbStreamInputError(
                f"Stream {stream!r}: the query returned column(s) {dupes} more than once; alias them so "
                "each payload field has one name."
            )
        if spec.deleted_column is not None and spec.deleted_column not in self.columns:
            raise DbStreamInputError(
                f"Stream {stream!r}: the query returned no column {spec.deleted_column!r} "
                f"(deleted_column); it returned {self.columns}. Select it, or fix deleted_column "
                "(names are case-sensitive)."
            )
        self.deleted_index = None if spec.deleted_column is None else self.columns.index(spec.deleted_column)
        self.pkey_columns = list(spec.pkey_columns)
        self.epoch_column = spec.epoch_column or self.pkey_columns[0]  # a key scan reads no epoch
        self._pkey_index = [self.columns.index(c) for c in self.pkey_columns]
        self._epoch_index = self.columns.index(self.epoch_column)
        self._composite = len(self.pkey_columns) > 1
        self.tz = tz
        self.epoch_unit = spec.epoch_unit
        self._dumps = _one_shot_encoder(make_default(tz))
        # '{"id":%s,"name":%s}': a row's payload from its values' JSON texts (see encode_batch); one
        # template per set of column pieces (``%s``, ``"%s"``, ...), made once.
        self._names = [encode_basestring(c).replace("%", "%%") + ":" for c in self.columns]
        self._templates: dict[tuple[str, ...], str] = {}
        self._second_texts: dict[int, str] = {}  # a wall-clock second -> its ISO text (_datetime_column)
        self._column_wise = not isinstance(getattr(self._dumps, "__self__", None), json.JSONEncoder)
        # Exact types the driver returns often, converted to their JSON text form before the C encoder
        # sees them: the same strings ``default`` would give, without a call back into it per value.
        self._fast: dict[type, Callable[[Any], Any]] = {
            Decimal: str,
            uuid.UUID: str,
            date: date.isoformat,
            datetime: lambda v: (v if v.tzinfo else v.replace(tzinfo=tz)).isoformat(),
        }

    def encode(self, row: Sequence[Any], row_number: int) -> Message:
        pkey = self._pkey(row, row_number)
        epoch_value = row[self._epoch_index]
        if epoch_value is None:
            raise self._row_error(row_number, pkey, self.epoch_column, "is NULL; every row needs its epoch")
        try:
            epoch_us = to_epoch_us(epoch_value, self.tz, self.epoch_unit)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise self._row_error(
                row_number, pkey, self.epoch_column, f"cannot be read as a modification time: {exc}"
            ) from None
        payload = self._payload(row, row_number, pkey)
        return Message(pkey, epoch_us, hashlib.blake2b(payload, digest_size=16).digest(), payload)

    def encode_batch(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Message]:
        """``encode`` for a batch, column-wise where it can; a bad row raises the error ``encode`` raises.

        The column-wise path writes each value's JSON text with C-level maps and joins a row's texts
        with a template, byte for byte the text of the json encoder; anything it does not take
        (a NaN, a NULL key or epoch, an unencodable value) sends the batch to the row-wise path.
        """
        if not rows:
            return []
        if self._column_wise:
            try:
                return self._encode_columns(rows, first_row_number)
            except Exception:  # the row-wise path is the reference: it encodes or names the problem
                pass
        return self._encode_rows(rows, first_row_number)

    def _encode_columns(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Message]:
        columns = list(zip(*rows, strict=True))
        if len(columns) != len(self.columns):
            raise ValueError("row length differs from the columns")
        epoch_us: Any = None
        texts, pieces = [], []
        for index, values in enumerate(columns):
            fast = self._datetime_column(values)
            if fast is not None:
                column_texts, piece, epochs = fast
                if index == self._epoch_index:
                    epoch_us = epochs
            else:
                column_texts, piece = self._json_texts(values)
            texts.append(column_texts)
            pieces.append(piece)
        template = self._templates.get(tuple(pieces))
        if template is None:
            template = self._templates[tuple(pieces)] = "{" + ",".join(map(add, self._names, pieces)) + "}"
        payloads = list(map(str.encode, map(template.__mod__, zip(*texts, strict=True))))
        digests = map(_DIGEST, map(_BLAKE2B_128, payloads))
        keys = columns[self._pkey_index[0]] if not self._composite else None
        key_kinds = set(map(type, keys)) if keys is not None else None
        if key_kinds == {str}:
            pkeys: Any = keys
        elif key_kinds == {int}:  # its JSON texts are its str()s (no bool: key_kinds is exact)
            pkeys = texts[self._pkey_index[0]]
        else:
            pkeys = [self._pkey(row, n) for n, row in enumerate(rows, first_row_number)]
        if epoch_us is None:
            epochs = columns[self._epoch_index]
            if set(map(type, epochs)) == {datetime} and None not in set(map(_TZINFO, epochs)):
                epoch_us = microseconds_since(UNIX_EPOCH, epochs)
            else:
                epoch_us = [to_epoch_us(v, self.tz, self.epoch_unit) for v in epochs]
        return list(map(tuple.__new__, repeat(Message), zip(pkeys, epoch_us, digests, payloads, strict=True)))

    def _datetime_column(self, values: Sequence[Any]) -> tuple[list[str], str, Any] | None:
        """A column of datetimes in one fixed-offset zone (UTC, most often), without ``isoformat`` per value.

        Values sharing one tzinfo object subtract as wall-clock times, so one C-level subtraction gives
        each value's wall-clock microseconds; its text is the cached text of its second, plus the
        fraction, plus the zone's one offset (in the template). Returns (texts, template piece, epochs
        in microseconds) or None when the column is anything else.
        """
        if set(map(type, values)) != {datetime}:
            return None
        zones = set(map(_TZINFO, values))
        if len(zones) != 1:
            return None
        (zone,) = zones
        offset = fixed_offset(self.tz if zone is None else zone)
        if offset is None:
            return None
        base = _NAIVE_EPOCH if zone is None else _NAIVE_EPOCH.replace(tzinfo=zone)
        wall_us = list(microseconds_since(base, values))
        seconds = list(map(floordiv, wall_us, repeat(1_000_000)))
        fractions = list(map(mod, wall_us, repeat(1_000_000)))
        cache = self._second_texts
        if len(cache) > 100_000:
            cache.clear()
        for second in set(seconds).difference(cache):
            cache[second] = (_NAIVE_EPOCH + timedelta(seconds=second)).isoformat()
        fraction_texts = list(map(_FRACTION, fractions))
        if 0 in set(fractions):  # isoformat writes no fraction for a whole second
            fraction_texts = ["" if f == 0 else t for f, t in zip(fractions, fraction_texts, strict=True)]
        texts = list(map(add, map(cache.__getitem__, seconds), fraction_texts))
        offset_us = offset // ONE_MICROSECOND
        epochs = map(sub, wall_us, repeat(offset_us)) if offset_us else wall_us
        return texts, '"%s' + iso_offset(offset) + '"', epochs

    def _json_texts(self, values: Sequence[Any]) -> tuple[list[str], str]:
        """The JSON text of each value of one column, exactly as the json encoder writes it in a payload,
        and the column's template piece: ``%s``, or ``"%s"`` where the texts are written unquoted."""
        kinds = set(map(type, values))
        nullable = type(None) in kinds
        kinds.discard(type(None))
        if len(kinds) == 1:
            (kind,) = kinds
            present = [v for v in values if v is not None] if nullable else values
            texts = _COLUMN_TEXTS.get(kind)
            piece = "%s"
            if kind is datetime and None in set(map(_TZINFO, present)):
                texts = self._naive_datetime_texts
            elif kind is float and not all(map(math.isfinite, present)):
                raise ValueError("NaN or Infinity: the row-wise path writes them as strings")
            elif kind in _PLAIN_QUOTED and not nullable:
                texts, piece = partial(map, _PLAIN_QUOTED[kind]), '"%s"'
            if kind in (float, date) and not nullable and len(values) >= 16:
                distinct = set(values)  # few distinct values: one text each (0.0 == -0.0, so not for those)
                if len(distinct) * 4 <= len(values) and not (kind is float and 0.0 in distinct):
                    texts = _memo(texts, distinct)
            if texts is not None:
                if not nullable:
                    return list(texts(values)), piece
                it = texts(present)
                return ["null" if v is None else next(it) for v in values], piece
        elif not kinds:
            return ["null"] * len(values), "%s"
        return list(map(self._dumps, values)), "%s"

    def _naive_datetime_texts(self, values: Iterable[datetime]) -> Iterator[str]:
        tz = self.tz
        return (encode_basestring((v if v.tzinfo else v.replace(tzinfo=tz)).isoformat()) for v in values)

    def _encode_rows(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> list[Message]:
        fast = self._fast
        special = [(i, type(v), fast[type(v)]) for i, v in enumerate(rows[0]) if type(v) in fast]
        columns, dumps, blake2b = self.columns, self._dumps, hashlib.blake2b
        epoch_index, tz, unit = self._epoch_index, self.tz, self.epoch_unit
        single = None if self._composite else self._pkey_index[0]
        messages = []
        append = messages.append
        for n, row in enumerate(rows, first_row_number):
            try:
                if single is None:
                    pkey = self._pkey(row, n)
                else:
                    key = row[single]
                    pkey = key if type(key) is str else str(key) if type(key) is int else self._pkey(row, n)
                epoch_us = to_epoch_us(row[epoch_index], tz, unit)
                values = list(row)
                for i, kind, convert in special:
                    if type(values[i]) is kind:
                        values[i] = convert(values[i])
                payload = dumps(dict(zip(columns, values, strict=True))).encode()
            except (TypeError, ValueError, ArithmeticError):
                append(self.encode(row, n))  # raises the error that names the column and row
                continue
            append(Message(pkey, epoch_us, blake2b(payload, digest_size=16).digest(), payload))
        return messages

    def _payload(self, row: Sequence[Any], row_number: int, pkey: str) -> bytes:
        record = dict(zip(self.columns, row, strict=True))
        try:
            text = self._dumps(record)
        except ValueError:  # NaN or Infinity somewhere
            text = self._dumps(_finite(record))
        except Unencodable:
            for column, value in record.items():
                try:
                    self._dumps(_finite(value))
                except Unencodable as exc:
                    raise self._row_error(
                        row_number, pkey, column, f"{exc}; cast it in the SQL (e.g. to text)"
                    ) from None
            raise
        return text.encode("utf-8")

    def key(self, row: Sequence[Any], row_number: int) -> str:
        """The pkey string alone, in the form messages carry (the reconcile's key scan)."""
        return self._pkey(row, row_number)

    def _pkey(self, row: Sequence[Any], row_number: int) -> str:
        values = [row[i] for i in self._pkey_index]
        for column, value in zip(self.pkey_columns, values, strict=True):
            if value is None:
                raise self._row_error(row_number, None, column, "is NULL; a primary key cannot be NULL")
        value = values[0]
        if not self._composite:
            if isinstance(value, str):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        try:
            text = self._dumps(values if self._composite else value)
        except Unencodable:
            for column, value in zip(self.pkey_columns, values, strict=True):
                try:
                    self._dumps(value)
                except Unencodable as exc:
                    raise self._row_error(
                        row_number,
                        None,
                        column,
                        f"{exc}, so it cannot be a pkey; cast it in the SQL (e.g. to text)",
                    ) from None
            raise
        if self._composite:
            return text
        return text[1:-1] if text.startswith('"') else text

    def _row_error(self, row_number: int, pkey: str | None, column: str, problem: str) -> BadRowError:
        where = f"row {row_number}" + (f" (pkey {pkey!r})" if pkey is not None else "")
        return BadRowError(
            f"Stream {self.stream!r}: column {column!r} of {where} {problem}. Nothing more was emitted "
            "and the watermark did not move; fix the data or the SQL and rerun the task (or set "
            'on_bad_row="dead_letter" to route such rows to the dead-letter stream).',
            column=column,
            problem=problem,
            pkey=pkey,
        )
