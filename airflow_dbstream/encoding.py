"""Row encoding: the exact, deterministic JSON payload of a row, its pkey string and its digest."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from airflow_dbstream.epoch import to_epoch_us
from airflow_dbstream.errors import DbStreamInputError

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


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: such floats become the strings 'NaN', 'Infinity', '-Infinity'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class Message:
    """One row version ready for the emit script."""

    pkey: str
    epoch_us: int
    digest: bytes
    payload: bytes


class RowEncoder:
    """Encodes the rows of one query result; built once per cycle from the cursor's column names."""

    def __init__(
        self,
        stream: str,
        columns: Sequence[str],
        pkey_columns: Sequence[str],
        epoch_column: str,
        tz: tzinfo,
        epoch_unit: str | None,
    ) -> None:
        self.stream = stream
        self.columns = list(columns)
        missing = [c for c in [*pkey_columns, epoch_column] if c not in self.columns]
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
        self.pkey_columns = list(pkey_columns)
        self.epoch_column = epoch_column
        self._pkey_index = [self.columns.index(c) for c in pkey_columns]
        self._epoch_index = self.columns.index(epoch_column)
        self._composite = len(pkey_columns) > 1
        self.tz = tz
        self.epoch_unit = epoch_unit
        default = make_default(tz)
        self._dumps = json.JSONEncoder(
            default=default, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode

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
        if self._composite:
            return self._dumps(values)
        value = values[0]
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        text = self._dumps(value)
        return text[1:-1] if text.startswith('"') else text

    def _row_error(self, row_number: int, pkey: str | None, column: str, problem: str) -> DbStreamInputError:
        where = f"row {row_number}" + (f" (pkey {pkey!r})" if pkey is not None else "")
        return DbStreamInputError(
            f"Stream {self.stream!r}: column {column!r} of {where} {problem}. Nothing more was emitted "
            "and the watermark did not move; fix the data or the SQL and rerun the task."
        )
