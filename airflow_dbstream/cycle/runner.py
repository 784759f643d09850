"""The cycle runner: lock, state, the window (or the first load) through the pipeline, commit, figures.

A cycle, in the order its data flows:

1. ``hooks/lease.py`` takes the stream's lock; every write below is fenced by its token.
2. ``hooks/redis_stream.py`` reads the committed watermark from ``<tag>:state``.
3. ``core/window.py`` plans the window from it, the lookback and the source's clock (``cycle/sources.py``).
4. ``cycle/pipeline.py`` reads the SQL with the window bound, encodes each batch (``core/rows.py``)
   and sends it through emit.lua (or, for a first load, ``cycle/snapshot.py`` does so chunk by chunk).
5. ``hooks/redis_stream.py`` commits the next watermark (``core/window.py``) and trims ``seen``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_dbstream.core import keys as state_fields
from airflow_dbstream.core.digest import FORMAT as DIGEST_FORMAT
from airflow_dbstream.core.digest import VERSIONS_FORMAT
from airflow_dbstream.core.figures import (
    cycle_figures,
    cycle_line,
    failure_line,
    guard_figures,
    iso,
    lag_seconds,
)
from airflow_dbstream.core.guard import (
    BLIND,
    OFF,
    OVER_MAX_HOLD,
    SINGLE_WRITER,
    Hold,
    OpenTransactions,
    decide,
    observed_lateness_us,
)
from airflow_dbstream.core.spec import StreamSpec
from airflow_dbstream.core.window import Window, next_watermark, plan_window, trim_cutoff
from airflow_dbstream.cycle.pipeline import Pipeline, QueryTotals
from airflow_dbstream.cycle.snapshot import Snapshot, SnapshotResult
from airflow_dbstream.cycle.sources import Source
from airflow_dbstream.hooks import faults, lease
from airflow_dbstream.hooks.redis_stream import RedisStreamHook, StreamState
from airflow_dbstream.hooks.sql_source import sql_source_hook
from airflow_dbstream.hooks.status import record_status

_SAID: set[str] = set()  # what this worker process has said once already
# Summed over the cycles of one cycles_for run.
LOOP_TOTALS = ("rows_read", "emitted", "duplicates", "deletes", "dead_lettered")


class CycleRunner:
    """Runs the cycles, replays and resets of one stream, each under the stream's lock."""

    def __init__(
        self,
        spec: StreamSpec,
        redis: RedisStreamHook,
        sql_conn_id: str,
        log: logging.Logger,
        on_cycle: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.spec = spec
        self.redis = redis
        self.sql_conn_id = sql_conn_id
        self.log = log
        self.on_cycle = on_cycle  # told each committed cycle's figures (the operator: Airflow metrics)
        self._pipeline: Pipeline | None = None  # this cycle's, for what it did before a failure
        self._window: Window | None = None

    def hold(self, wait: timedelta) -> Any:
        """The stream's lock for one run: every write of the run is fenced by it."""
        return lease.hold(self.redis, self.spec.keys, self.spec.lease_ms, wait.total_seconds())

    @contextmanager
    def source(self, *, windowed: bool = True) -> Iterator[Source]:
        """An open connection to the stream's source, closed (its read transaction ended) after.

        ``windowed``: the SQL reads a window, so it must bind window_start (a key scan need not)."""
        source = Source.for_hook(sql_source_hook(self.sql_conn_id), self.spec.tz, self.spec.epoch_unit)
        if windowed:
            source.check_sql(self.spec.sql, self.spec.stream)
        source.open()
        try:
            yield source
        finally:
            source.close()

    def cycle(self) -> dict[str, Any]:
        """One cycle (raises lease.LockBusy when another holds the stream past lock_wait), then its status."""
        try:
            figures = self._cycle()
        except lease.LockBusy:
            raise
        except Exception as exc:
            self.log.error(failure_line(self.spec.stream, self._pipeline, self._window, exc))
            raise
        client = self.redis.get_conn()
        dead = self.spec.dead_letters
        status = faults.call(
            "status", self.spec.stream, lambda: record_status(client, self.spec.keys, dead_letters=dead)
        )
        if self.on_cycle is not None:
            self.on_cycle({**figures, **({"dead_length": status["dead_length"]} if dead else {})})
        return figures

    def cycles_for(self, run_for: timedelta, poll_interval: timedelta) -> dict[str, Any]:
        """Cycles back to back for ``run_for``, starting ``poll_interval`` apart (a @continuous DAG's run).

        Raises lease.LockBusy only when another cycle held the stream throughout."""
        deadline = time.monotonic() + run_for.total_seconds()
        period = poll_interval.total_seconds()
        totals = dict.fromkeys(LOOP_TOTALS, 0)
        cycles = 0
        figures: dict[str, Any] | None = None
        while True:
            started = time.monotonic()
            try:
                figures = self.cycle()
            except lease.LockBusy as busy:  # another cycle holds the stream: try again next period
                if figures is None and started + period >= deadline:
                    raise
                self.log.info(
                    "Stream %s: another cycle (%s) holds the stream; trying again in %.1f s",
                    self.spec.stream,
                    busy.holder,
                    period,
                )
            else:
                cycles += 1
                for name in totals:
                    totals[name] += figures[name]
            # Cycles start poll_interval apart (back to back when one takes longer), so a commit
            # waits at most about poll_interval plus one cycle before it is in the stream.
            next_start = max(time.monotonic(), started + period)
            if next_start >= deadline:
                break
            time.sleep(max(0.0, next_start - time.monotonic()))
        if figures is None:
            raise lease.LockBusy("another cycle, throughout run_for", 0)
        return {**figures, "cycles": cycles, **{f"{name}_total": n for name, n in totals.items()}}

    def _cycle(self) -> dict[str, Any]:
        started = time.monotonic()
        self._pipeline = self._window = None
        spec, keys = self.spec, self.spec.keys
        with self.hold(spec.lock_wait) as held, self.source() as source:
            state = self.redis.read_state(keys)
            read_us, open_transactions = source.clock(spec.transaction_guard)
            pipeline = self._pipeline = Pipeline(spec, self.redis, held, read_us)
            if spec.transaction_guard is not False and source.kind == "generic":
                self._say_once(
                    f"Stream {spec.stream}: a {source.kind} source shows no open transactions, so "
                    "the transaction guard is off; lookback alone bounds how late a row may commit."
                )
            window = plan_window(state.watermark_us, spec.lookback_us, spec.start_from_us, read_us)
            self._window = window
            self._upgrade_versions(state, held)
            snapshot: Snapshot | None = None
            if window.snapshot and spec.chunked_first_load:
                snapshot = Snapshot(spec, source, self.redis, pipeline, self.log)
                # The guard may hold the load's watermark below what it reads: its trims stay below that.
                hold = decide(open_transactions, None, spec.lookback_us, read_us, spec.guard_max_hold_us)
                done: QueryTotals | SnapshotResult = snapshot.run(state, read_us, hold.cap_us)
                # The first normal window re-reads all changed since the snapshot began.
                window = plan_window(None, spec.lookback_us, None, done.started_us)
            else:
                params = source.window_params(spec.parameters, window.start_us, window.end_us)
                done = pipeline.run(source, spec.sql, params)
            source.close()  # the read is over: no transaction of ours stays open while Redis commits
            read = Read(state, window, done, read_us, open_transactions, source.bound_slack_us)
            figures = self._commit(held, read, started)
            if snapshot is not None and figures["watermark"] is not None:
                snapshot.finish()  # the watermark now covers the table: a later snapshot starts afresh
        self.log.info(cycle_line(figures, snapshot=window.snapshot))
        return figures

    def _commit(self, held: lease.Lease, read: Read, started: float) -> dict[str, Any]:
        """Commit the next watermark with the cycle's figures, trim ``seen``; the figures as committed."""
        spec, previous_us = self.spec, read.state.watermark_us
        hold = decide(
            read.open_transactions, previous_us, spec.lookback_us, read.read_us, spec.guard_max_hold_us
        )
        end_us = read.window.end_us  # the read's clock (for a first load: when it began)
        uncapped_us = next_watermark(previous_us, read.done.max_epoch_us, end_us)
        watermark_us = next_watermark(previous_us, read.done.max_epoch_us, end_us, hold.cap_us)
        held_us = 0 if uncapped_us is None or watermark_us is None else uncapped_us - watermark_us
        lateness_us = observed_lateness_us(previous_us, getattr(read.done, "lowest_emitted_us", None))
        self._say_guard(hold, read.open_transactions, held_us, lateness_us)
        figures = cycle_figures(spec.stream, read.done, read.window, watermark_us, end_us, started)
        figures.update(guard_figures(hold, held_us, lateness_us))
        # Keep in `seen` every row the next window's (widened) bound can return again.
        slack = 0 if watermark_us is None else read.slack_us(watermark_us - spec.lookback_us)
        recorded = {
            state_fields.LAST_CYCLE: json.dumps({**figures, "finished_at": datetime.now(UTC).isoformat()}),
            **({state_fields.TRACK_KEYS: "1"} if spec.track_keys else {}),
            state_fields.DIGEST_FORMAT: VERSIONS_FORMAT,
        }
        committed_us = self.redis.commit(spec.keys, watermark_us, spec.lookback_us + slack, recorded, held)
        if spec.dead_letters and committed_us is not None:  # the bad versions no window reads again
            self.redis.trim_dead(spec.keys, trim_cutoff(committed_us, spec.lookback_us + slack))
        if committed_us != watermark_us:  # another cycle committed further meanwhile
            figures["watermark"] = iso(committed_us)
            figures["lag_seconds"] = lag_seconds(committed_us, end_us)
        return figures

    def _upgrade_versions(self, state: StreamState, held: lease.Lease) -> None:
        """A stream an earlier build wrote keeps bare digests in ``<tag>:digest``: they become versions
        (lua/upgrade.lua) before anything is read. Digests of today's format are kept, so nothing is
        sent again; older ones cannot be: the window's rows at the epoch ``seen`` holds are sent once
        more, said in one WARNING (again by a rerun of a failed upgrade cycle, which sends nothing)."""
        written = state.watermark_us is not None or state_fields.SNAPSHOT_CURSOR in state.fields
        found = state.fields.get(state_fields.DIGEST_FORMAT)
        if not written or found == VERSIONS_FORMAT:
            return
        keep = found == DIGEST_FORMAT
        rewritten = self.redis.upgrade_versions(self.spec.keys, keep_digests=keep, lease=held)
        if keep:
            self.log.info(
                "Stream %s: %d entries of %s rewritten from digests to versions (epoch:digest, %s); "
                "nothing is sent again.",
                self.spec.stream, rewritten, self.spec.keys.digest, VERSIONS_FORMAT,
            )  # fmt: skip
            return
        self.log.warning(
            "Stream %s: its digests were written in %s, not %s (the typed digest of 0.1.0 onwards): "
            "this cycle sends again, once, the rows of its window that seen already holds at the same "
            "epoch; consumers receive those versions twice. Later cycles do not. See "
            "docs/performance.md, 'Upgrading'.",
            self.spec.stream,
            f"format {found!r}" if found else "the payload-hash format of earlier builds",
            DIGEST_FORMAT,
        )

    def _say_once(self, text: str) -> None:
        if text not in _SAID:
            _SAID.add(text)
            self.log.info(text)

    def _say_guard(self, hold: Hold, seen: OpenTransactions, held_us: int, lateness_us: int | None) -> None:
        """The guard's WARNINGs: blind (with the GRANT), holding (naming the session), past its cap."""
        spec = self.spec
        if hold.state == BLIND:
            self.log.warning(
                "Stream %s: the transaction guard is blind: this connection's user cannot see other "
                "sessions' transactions, so a transaction committing later than lookback (%s) after its "
                "timestamp can be missed. Run: %s",
                spec.stream,
                spec.lookback,
                seen.grant,
            )
        elif hold.state == OVER_MAX_HOLD:
            self.log.warning(
                "Stream %s: %s has been open for %.0f s, longer than guard_max_hold (%s): the guard no "
                "longer holds the watermark for it, so rows it commits stamped more than lookback before the "
                "watermark WILL BE MISSED. End that session, or raise guard_max_hold.",
                spec.stream,
                seen.holder or "a transaction",
                (hold.oldest_age_us or 0) / 1e6,
                spec.guard_max_hold,
            )
        elif held_us > 0:
            self.log.warning(
                "Stream %s: an open transaction holds the watermark back by %.1f s: %s, open for %.0f s. Its "
                "rows are read when it commits; until then each cycle re-reads from its start. If the "
                "session was forgotten, end it.",
                spec.stream,
                held_us / 1e6,
                seen.holder or "a transaction",
                (hold.oldest_age_us or 0) / 1e6,
            )
        if (
            hold.state in (OFF, BLIND, SINGLE_WRITER)
            and lateness_us is not None
            and lateness_us > 0.8 * spec.lookback_us
        ):
            self.log.warning(
                "Stream %s: a row arrived %.1f s late (stamped that long before the previous watermark), "
                "more than 80%% of lookback (%s), with the transaction guard %s: raise lookback, or turn the "
                "guard on, before a later one is missed.",
                spec.stream,
                lateness_us / 1e6,
                spec.lookback,
                hold.state,
            )


@dataclass(frozen=True)
class Read:
    """What a cycle read: the state it started from, its window, its totals, the source's clock and
    open transactions at the read, and how far the source widens a window's bound."""

    state: StreamState
    window: Window
    done: QueryTotals | SnapshotResult
    read_us: int
    open_transactions: OpenTransactions
    slack_us: Callable[[int], int]
