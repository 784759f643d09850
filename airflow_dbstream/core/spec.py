"""StreamSpec: a stream's validated arguments, built once and passed to every part of a cycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any

from airflow_dbstream.core.deadletters import ON_BAD_ROW
from airflow_dbstream.core.epoch import check_unit, datetime_to_us, load_timezone
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys

RESERVED_PARAMETERS = ("window_start", "window_end")
ONE_US = timedelta(microseconds=1)


def pkey_column_list(pkey_column: str | Sequence[str]) -> tuple[str, ...]:
    """One key column or several, checked: a non-empty name each."""
    pkeys = (pkey_column,) if isinstance(pkey_column, str) else tuple(pkey_column)
    if not pkeys or not all(isinstance(c, str) and c for c in pkeys):
        raise DbStreamInputError(f"pkey_column must be a column name or a list of them, got {pkey_column!r}.")
    return pkeys


def duration(name: str, value: timedelta | float, *, positive: bool) -> timedelta:
    """A duration argument as a timedelta (numbers are seconds), checked."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if not isinstance(value, timedelta) or value < timedelta(0) or (positive and not value):
        kind = "a positive" if positive else "a non-negative"
        raise DbStreamInputError(f"{name} must be {kind} timedelta (or seconds), got {value!r}.")
    return value


@dataclass(frozen=True)
class StreamSpec:
    """What a stream is: where its rows come from, how they are keyed and stamped, where they go.

    Checked when built (at DAG parse time), again when the operator's templated fields are rendered
    (``rendered``). The stream's key is checked when its keys are first needed: it may be templated.
    """

    stream: str
    sql: str
    pkey_column: str | Sequence[str]
    lookback: timedelta
    variant: str
    epoch_column: str | None = None  # None only for a key scan (the reconcile), which reads no epoch
    start_from: datetime | None = None
    maxlen: int | None = None
    batch_size: int = 1000
    parameters: Mapping[str, Any] = field(default_factory=dict)
    source_timezone: str = "UTC"
    epoch_unit: str | None = None
    snapshot_chunk_size: int | None = 50_000
    deleted_column: str | None = None
    track_keys: bool = False
    lock_lease: timedelta = timedelta(seconds=30)
    lock_wait: timedelta = timedelta(0)
    transaction_guard: bool | None = None  # None: on where the source shows its open transactions
    guard_max_hold: timedelta = timedelta(hours=1)
    pause_gc: bool = False  # pause Python's cyclic collector while a query is read and sent
    on_bad_row: str = "fail"  # or "dead_letter": a row failing its checks goes to <tag>:dead, once
    lookback_hint: str = field(default="longest transaction + writers' clock skew", compare=False)
    pkey_columns: tuple[str, ...] = field(init=False)
    tz: tzinfo = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.lookback, timedelta) or self.lookback <= timedelta(0):
            raise DbStreamInputError(
                f"lookback must be a positive timedelta ({self.lookback_hint}), got {self.lookback!r}."
            )
        if self.batch_size < 1:
            raise DbStreamInputError(f"batch_size must be at least 1, got {self.batch_size!r}.")
        object.__setattr__(self, "pkey_columns", pkey_column_list(self.pkey_column))
        if self.maxlen is not None and self.maxlen < 1:
            raise DbStreamInputError(f"maxlen must be None or a positive length, got {self.maxlen!r}.")
        clash = [p for p in RESERVED_PARAMETERS if p in (self.parameters or {})]
        if clash:
            raise DbStreamInputError(f"parameters must not set {clash}: the operator binds them each cycle.")
        object.__setattr__(self, "parameters", dict(self.parameters or {}))
        check_unit(self.epoch_unit)
        if self.snapshot_chunk_size is not None and self.snapshot_chunk_size < 1:
            raise DbStreamInputError(
                f"snapshot_chunk_size must be None or at least 1, got {self.snapshot_chunk_size!r}."
            )
        if self.lock_lease < timedelta(milliseconds=100) or self.lock_wait < timedelta(0):
            raise DbStreamInputError(
                f"lock_lease must be at least 100 ms and lock_wait not negative, got {self.lock_lease!r}, "
                f"{self.lock_wait!r}."
            )
        if self.transaction_guard not in (None, True, False):
            raise DbStreamInputError(
                f"transaction_guard must be None (on where the source shows its transactions), True or "
                f"False, got {self.transaction_guard!r}."
            )
        duration("guard_max_hold", self.guard_max_hold, positive=True)
        if self.on_bad_row not in ON_BAD_ROW:
            raise DbStreamInputError(
                f'on_bad_row must be "fail" (a bad row stops the stream) or "dead_letter" (it goes to the '
                f"stream's <tag>:dead stream and the stream goes on), got {self.on_bad_row!r}."
            )
        object.__setattr__(self, "tz", load_timezone(self.source_timezone))

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> StreamSpec:
        """The spec of an operator's arguments (its ``locals()``): the names that are spec fields."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.init and f.name in arguments})

    def rendered(self, **changes: Any) -> StreamSpec:
        """The same spec with fields Airflow rendered (templates) or a run asked for, checked again."""
        return replace(self, **changes)

    def check_columns(self, columns: Sequence[str]) -> None:
        """The query's result columns hold the key, epoch and deleted columns, each name once."""
        needed = [*self.pkey_columns, *([self.epoch_column] if self.epoch_column else [])]
        if missing := [c for c in needed if c not in columns]:
            raise DbStreamInputError(
                f"Stream {self.stream!r}: the query returned no column {', '.join(map(repr, missing))}; "
                f"it returned {list(columns)}. Select the key and epoch columns, or fix pkey_column / "
                "epoch_column (names are case-sensitive)."
            )
        if len(set(columns)) != len(columns):
            dupes = sorted({c for c in columns if list(columns).count(c) > 1})
            raise DbStreamInputError(
                f"Stream {self.stream!r}: the query returned column(s) {dupes} more than once; alias them "
                "so each payload field has one name."
            )
        if self.deleted_column is not None and self.deleted_column not in columns:
            raise DbStreamInputError(
                f"Stream {self.stream!r}: the query returned no column {self.deleted_column!r} "
                f"(deleted_column); it returned {list(columns)}. Select it, or fix deleted_column "
                "(names are case-sensitive)."
            )

    @cached_property
    def keys(self) -> StreamKeys:
        return StreamKeys.for_stream(self.stream)

    @property
    def lookback_us(self) -> int:
        return self.lookback // ONE_US

    @property
    def lease_ms(self) -> int:
        return self.lock_lease // timedelta(milliseconds=1)

    @property
    def guard_max_hold_us(self) -> int:
        return self.guard_max_hold // ONE_US

    @property
    def start_from_us(self) -> int | None:
        return None if self.start_from is None else datetime_to_us(self.start_from, self.tz)

    @property
    def dead_letters(self) -> bool:
        return self.on_bad_row == "dead_letter"

    @property
    def chunked_first_load(self) -> bool:
        return self.snapshot_chunk_size is not None
