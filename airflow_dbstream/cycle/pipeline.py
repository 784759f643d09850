"""The one read -> encode -> emit pipeline: a query's rows in batches, encoded, sent to Redis, overlapped.

Every path that sends rows runs on it: a cycle's window, each chunk of the first load, a replay.
The rows are checked in one place, the row encoder (core/rows.py); a batch's live rows go through
emit.lua, the rows ``deleted_column`` marks as tombstones through delete.lua (or, for a replay,
all of them through replay.lua). With ``on_bad_row="dead_letter"``, a row the encoder refuses (its
BadRowError) becomes a dead letter (core/deadletters.py) sent through deadletter.lua after the batch's
messages; any other error still fails the query.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_dbstream.core.deadletters import DeadLetter, dead_letter
from airflow_dbstream.core.deletes import is_deleted
from airflow_dbstream.core.epoch import to_epoch_us
from airflow_dbstream.core.errors import BadRowError
from airflow_dbstream.core.rows import Columns, RowEncoder, Version, Versions, take
from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.cycle.overlap import BackgroundEmitter, read_ahead
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks.lease import Lease
from airflow_dbstream.hooks.redis_stream import RedisStreamHook


@dataclass(frozen=True)
class BatchResult:
    emitted: int
    duplicates: int
    deletes: int  # tombstones emitted (counted in emitted too)
    lowest_epoch_us: int | None = None  # the lowest epoch of the live rows emitted
    dead_lettered: int = 0  # bad rows appended to <tag>:dead (not counted in emitted)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch read and checked: each row's version (pkey, epoch, typed digest); no JSON written yet."""

    rows: Sequence[Sequence[Any]]  # the good rows (without the dead letters')
    versions: Versions  # in the order read
    deleted: list[bool] | None  # per row, whether deleted_column marks it deleted
    max_epoch_us: int | None  # None only when every row was bad and had no readable epoch
    last_row: Sequence[Any]
    encoder: RowEncoder
    payloads: list[bytes] | None = None  # written already (a window of changed rows), else when sent
    dead_letters: list[DeadLetter] = field(default_factory=list)  # the bad rows (on_bad_row)

    def __len__(self) -> int:
        return len(self.versions) + len(self.dead_letters)

    def parts(self) -> list[tuple[list[int], str]]:
        """The rows' positions, live (for emit.lua) and dead (for delete.lua), with the script of each."""
        if self.deleted is None:
            return [(list(range(len(self.versions))), "emit")]
        live = [i for i, d in enumerate(self.deleted) if not d]
        dead = [i for i, d in enumerate(self.deleted) if d]
        return [(live, "emit"), (dead, "delete")]

    def columns(self, positions: Sequence[int]) -> Columns:
        """The pkeys, epochs, digests and payloads of the rows at ``positions`` (not empty), as the emit
        script takes them: only now are their payloads written."""
        versions = self.versions.pick(positions)
        if self.payloads is not None:
            payloads = take(self.payloads, positions)
        else:
            payloads = self.encoder.payloads(take(self.rows, positions), versions)
        return versions.pkeys, versions.epochs_us, versions.digests, payloads


@dataclass
class QueryTotals:
    """What one query's rows did so far; ``rows_read`` counts rows as they are read, the rest as sent."""

    rows_read: int = 0
    emitted: int = 0
    duplicates: int = 0
    deletes: int = 0
    max_epoch_us: int | None = None
    lowest_emitted_us: int | None = None  # the lowest epoch of the live rows emitted
    last_row: Sequence[Any] | None = None
    dead_lettered: int = 0


Send = Callable[..., BatchResult]


@contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
    """``pause_gc``: the cyclic collector, which would only walk the queued batches (and, in a full
    collection, the whole worker's heap), waits until the query is read and sent. Process-wide, so
    opt-in; measured at 100k rows: -18 % CPU and +5 to +18 % rows/s on first loads and changed rows."""
    collecting = pause and gc.isenabled()
    if collecting:
        gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class Pipeline:
    """Encodes and sends the rows of a stream's queries; one per run (its encoder is made once)."""

    def __init__(
        self, spec: StreamSpec, redis: RedisStreamHook, lease: Lease | None, read_us: int = 0
    ) -> None:
        self.spec = spec
        self.redis = redis
        self.lease = lease
        self.read_us = read_us  # the source's clock at the read: a dead letter's score when it has no epoch
        self.encoder: RowEncoder | None = None
        self.rows_read = self.emitted = 0  # over all its queries, failed ones included

    def run(
        self,
        source: Source,
        sql: str,
        parameters: Mapping[str, Any],
        *,
        rows_before: int = 0,
        totals: QueryTotals | None = None,
        send: Send | None = None,
    ) -> QueryTotals:
        """Read the query in batches and send them all, overlapped: batch k is sent by a background
        thread while batch k + 1 is encoded (and, where the source allows it, k + 2 is fetched).

        Returns when every batch is in Redis; ``totals`` (given or new) shows the progress even when
        this raises. ``send`` is ``self.emit`` (dedup against ``seen``) unless told otherwise.
        """
        totals = totals if totals is not None else QueryTotals()
        background = BackgroundEmitter(send or self.emit)
        batches = source.batches(sql, parameters, self.spec.batch_size)
        if source.read_ahead:
            batches = read_ahead(batches)
        with collector_paused(self.spec.pause_gc):
            try:
                for columns, rows in batches:
                    if not rows:  # an empty result: its columns are checked all the same
                        self.encoder_for(columns)
                        continue
                    # While the emitter prechecks (the window is mostly known), payloads wait for it;
                    # else they are written here, beside the emitter's Redis calls, as before.
                    at = rows_before + totals.rows_read
                    prepared = self.prepare(columns, rows, at, encode=not background.prechecking)
                    background.submit(prepared)
                    totals.rows_read += len(rows)
                    totals.last_row = prepared.last_row
                    top, batch_top = totals.max_epoch_us, prepared.max_epoch_us
                    if batch_top is not None:
                        totals.max_epoch_us = batch_top if top is None else max(top, batch_top)
                totals.emitted, totals.duplicates, totals.deletes, totals.lowest_emitted_us = (
                    background.finish()
                )
                totals.dead_lettered = background.dead_lettered
            except BaseException:
                background.abandon()
                totals.emitted = background.emitted  # what reached the stream before the failure
                totals.dead_lettered = background.dead_lettered
                raise
            finally:
                batches.close()
                self.rows_read += totals.rows_read
                self.emitted += totals.emitted
        return totals

    def prepare(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], rows_before: int, *, encode: bool = False
    ) -> PreparedBatch:
        """The batch's versions (and with ``encode`` its payloads), live and dead apart, and its bad
        rows' dead letters (on_bad_row): all a cycle needs before Redis (see overlap)."""
        encoder = self.encoder_for(columns)
        if self.spec.dead_letters:
            versions, good, letters = self._split(encoder, rows, rows_before + 1)
        else:
            versions, good, letters = encoder.versions(rows, rows_before + 1), rows, []
        index = encoder.deleted_index
        deleted = None if index is None else [is_deleted(row[index]) for row in good]
        top = max(versions.epochs_us, default=None)
        known = [int(d.epoch_us) for d in letters if d.epoch_us]  # a bad row read is a row read
        if known:
            top = max(known) if top is None else max(top, *known)
        payloads = encoder.payloads(good, versions) if encode and good else None
        return PreparedBatch(good, versions, deleted, top, rows[-1], encoder, payloads, letters)

    def encoder_for(self, columns: Sequence[str]) -> RowEncoder:
        """The run's encoder, made from the first query's columns (which it checks)."""
        if self.encoder is None:
            self.encoder = RowEncoder(self.spec, columns)
        return self.encoder

    def _split(
        self, encoder: RowEncoder, rows: Sequence[Sequence[Any]], first_row_number: int
    ) -> tuple[Versions, list[Sequence[Any]], list[DeadLetter]]:
        """(versions, the rows they are of, dead letters): a batch the encoder refuses is read again
        row by row, each refused row (BadRowError, nothing else) becoming a dead letter."""
        try:
            return encoder.versions(rows, first_row_number), rows, []
        except BadRowError:
            pass
        versions: list[Version] = []
        good, letters = [], []
        for n, row in enumerate(rows, first_row_number):
            try:
                versions.append(encoder.version(row, n))
            except BadRowError as bad:
                letters.append(self._dead_letter(encoder, row, bad))
            else:
                good.append(row)
        return Versions.of(versions), good, letters

    def _dead_letter(self, encoder: RowEncoder, row: Sequence[Any], bad: BadRowError) -> DeadLetter:
        epoch_us = None
        value = row[encoder.columns.index(encoder.epoch_column)]
        if value is not None:
            try:
                epoch_us = to_epoch_us(value, encoder.tz, encoder.epoch_unit)
            except Exception:  # unreadable: the letter goes out without an epoch
                epoch_us = None
        return dead_letter(
            encoder.columns,
            row,
            column=bad.column,
            problem=bad.problem,
            pkey=bad.pkey,
            epoch_us=epoch_us,
            read_us=self.read_us,
        )

    def emit(self, batch: PreparedBatch, *, precheck: bool = False) -> BatchResult:
        """Emit a prepared batch; ``precheck`` first drops the rows ``seen`` already holds, by their
        (pkey, epoch, digest), so an unchanged row is never encoded nor sent (the scripts still judge)."""
        spec, keys, lease = self.spec, self.spec.keys, self.lease
        if lease is not None:
            lease.renew_if_due()  # before the precheck too: a window of duplicates must keep the lease
        emitted = duplicates = deletes = 0
        lowest = None
        for positions, script in batch.parts():
            versions = batch.versions.pick(positions)
            args = dict(lease=lease, track_keys=spec.track_keys, script=script, precheck=precheck)
            encode = lambda kept, at=positions: batch.columns(take(at, kept))  # noqa: E731
            result = self.redis.emit(keys, spec.variant, spec.maxlen, versions, encode=encode, **args)
            emitted, duplicates = emitted + result.emitted, duplicates + result.duplicates
            if script == "delete":
                deletes += result.emitted
            else:
                lowest = result.lowest_epoch_us
        dead_lettered = 0
        if batch.dead_letters:  # after the batch's messages: a rerun finds either already sent
            dead_lettered = self.redis.dead_letter(keys, spec.variant, spec.maxlen, batch.dead_letters, lease)
        return BatchResult(emitted, duplicates, deletes, lowest, dead_lettered)

    def replayer(self, marker: str, start_us: int, end_us: int) -> Send:
        """A ``send`` that appends every row of [start, end) again, marked ``replay``, without dedup
        (and its bad rows to the dead-letter stream again, marked too)."""
        spec = self.spec

        def replay(batch: PreparedBatch, *, precheck: bool = False) -> BatchResult:
            deleted = batch.deleted or [False] * len(batch.versions)
            inside = [i for i, e in enumerate(batch.versions.epochs_us) if start_us <= e < end_us]
            rows = []  # the SQL may not bind window_end
            if inside:
                pkeys, epochs, _digests, payloads = batch.columns(inside)
                ops = ["delete" if deleted[i] else "" for i in inside]
                rows = list(zip(pkeys, epochs, ops, payloads, strict=True))
            letters = [
                d for d in batch.dead_letters if not d.epoch_us or start_us <= int(d.epoch_us) < end_us
            ]
            assert self.lease is not None
            self.lease.renew_if_due()
            sent = self.redis.replay(spec.keys, spec.variant, spec.maxlen, marker, rows, self.lease)
            dead = self.redis.dead_letter(spec.keys, spec.variant, spec.maxlen, letters, self.lease, marker)
            return BatchResult(sent, 0, 0, dead_lettered=dead)

        return replay
