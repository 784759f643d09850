"""Every epoch column type, on the real databases: bound in the form it needs, converted exactly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.core.epoch import datetime_to_us
from tests.integration.conftest import read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")


def _naive(zone: ZoneInfo, *, seconds: bool = False) -> Callable[[datetime], datetime]:
    def convert(at: datetime) -> datetime:
        local = at.astimezone(zone).replace(tzinfo=None)
        return local.replace(microsecond=0) if seconds else local

    return convert


def _text(zone: ZoneInfo, sep: str = " ") -> Callable[[datetime], str]:
    return lambda at: at.astimezone(zone).replace(tzinfo=None).isoformat(sep=sep, timespec="microseconds")


def _number(per_second: int) -> Callable[[datetime], int]:
    return lambda at: datetime_to_us(at, UTC) * per_second // 1_000_000


def _floor(step_us: int) -> Callable[[datetime], int]:
    return lambda at: datetime_to_us(at, UTC) // step_us * step_us


def _exact(at: datetime) -> int:
    return datetime_to_us(at, UTC)


def _midnight(zone: ZoneInfo) -> Callable[[datetime], int]:
    return lambda at: datetime_to_us(datetime.combine(at.astimezone(zone).date(), datetime.min.time()), zone)


@dataclass
class Case:
    kind: str
    column: str
    timezone: str
    unit: str | None
    to_db: Callable[[datetime], Any]
    expected_us: Callable[[datetime], int]
    bind_end: bool = True  # ISO text with 'T' sorts after same-day bounds: bind window_start only

    def __str__(self) -> str:
        return f"{self.kind}-{self.column}-{self.timezone}-{self.unit or 'datetime'}"


CASES = [
    Case("postgres", "timestamptz", "UTC", None, lambda at: at, _exact),
    Case("postgres", "timestamp", "Europe/Paris", None, _naive(PARIS), _exact),
    Case("postgres", "timestamp", "America/New_York", None, _naive(ZoneInfo("America/New_York")), _exact),
    Case("postgres", "date", "Europe/Paris", None, lambda at: at.astimezone(PARIS).date(), _midnight(PARIS)),
    Case("postgres", "bigint", "UTC", "s", _number(1), _floor(1_000_000)),
    Case("postgres", "bigint", "UTC", "ms", _number(1000), _floor(1000)),
    Case("mariadb", "DATETIME(0)", "Europe/Paris", None, _naive(PARIS), _floor(1_000_000)),
    Case("mariadb", "DATETIME(6)", "UTC", None, _naive(ZoneInfo("UTC")), _exact),
    Case("mariadb", "DATETIME(6)", "Europe/Paris", None, _naive(PARIS), _exact),
    # TIMESTAMP stores an instant; the test's session writes it in UTC, the operator reads it in Paris.
    Case("mariadb", "TIMESTAMP(6) NULL", "Europe/Paris", None, _naive(ZoneInfo("UTC")), _exact),
    Case("mariadb", "TIMESTAMP NULL", "UTC", None, _naive(ZoneInfo("UTC")), _floor(1_000_000)),
    Case("mariadb", "BIGINT", "UTC", "ms", _number(1000), _floor(1000)),
    Case("sqlite", "TEXT", "Europe/Paris", None, _text(PARIS), _exact),
    Case("sqlite", "TEXT", "UTC", None, lambda at: at.isoformat(), _exact, bind_end=False),  # 'T', '+00:00'
    Case("sqlite", "INTEGER", "UTC", "s", _number(1), _floor(1_000_000)),
    Case("sqlite", "INTEGER", "UTC", "ms", _number(1000), _floor(1000)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_epoch_column_is_bound_and_converted_exactly(case: Case, databases, stream, redis_client):
    db = databases(case.kind)
    table = db.table(f"id BIGINT NOT NULL, note VARCHAR(20) NOT NULL, v {case.column}")
    sql = f"SELECT id, note, v FROM {table} WHERE v >= {db.param('window_start')}"
    if case.bind_end:
        sql += f" AND v <= {db.param('window_end')}"
    options = dict(sql=sql, epoch_column="v", source_timezone=case.timezone, epoch_unit=case.unit)
    now = db.now()
    stamps = {
        1: now - timedelta(days=3),  # before start_from: never read
        2: now - timedelta(minutes=10, microseconds=876_543),
        3: now - timedelta(minutes=5, microseconds=1),
        4: now - timedelta(seconds=1, microseconds=500_000),
    }
    db.executemany(
        f"INSERT INTO {table} (id, note, v) VALUES (%s, %s, %s)",
        [(i, "v1", case.to_db(at)) for i, at in stamps.items()],
    )

    first = run_cycle(db, stream, start_from=now - timedelta(days=1), **options)
    assert (first["rows_read"], first["emitted"]) == (3, 3)
    epochs = {int(m["pkey"]): int(m["epoch"]) for m in read_stream(redis_client, stream)}
    assert epochs == {i: case.expected_us(stamps[i]) for i in (2, 3, 4)}
    assert run_cycle(db, stream, **options)["emitted"] == 0

    changed = db.now()
    db.execute(f"UPDATE {table} SET note = %s, v = %s WHERE id = 2", ("v2", case.to_db(changed)))
    third = run_cycle(db, stream, **options)
    assert third["emitted"] == 1 and third["rows_read"] <= 3
    last = read_stream(redis_client, stream)[-1]
    assert (last["pkey"], int(last["epoch"])) == ("2", case.expected_us(changed))
    assert watermark(redis_client, stream) <= datetime_to_us(db.now(), UTC)


FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # Paris: 03:00 CEST becomes 02:00 CET


@pytest.mark.parametrize(
    ("kind", "column", "to_db"),
    [
        ("postgres", "timestamp", _naive(PARIS)),
        ("mariadb", "DATETIME(6)", _naive(PARIS)),
        ("mariadb", "DATETIME(0)", _naive(PARIS, seconds=True)),
        ("sqlite", "TEXT", _text(PARIS)),
    ],
    ids=["postgres-timestamp", "mariadb-datetime6", "mariadb-datetime0", "sqlite-text"],
)
def test_naive_wall_clock_across_a_dst_fall_back_loses_nothing(
    kind, column, to_db, databases, stream, redis_client
):
    """Before the fall-back rows read 02:00-02:50 CEST; after it, new rows read 02:00-02:50 again (CET)."""
    db = databases(kind)
    table = db.table(f"id BIGINT NOT NULL, v {column}")
    sql = f"SELECT id, v FROM {table} WHERE v >= {db.param('window_start')}"
    options = dict(sql=sql, epoch_column="v", source_timezone="Europe/Paris", lookback=timedelta(minutes=10))

    def insert(ids: range, first: datetime) -> None:
        rows = [(i, to_db(first + timedelta(minutes=10 * n))) for n, i in enumerate(ids)]
        db.executemany(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", rows)

    insert(range(1, 7), FALL_BACK - timedelta(hours=1))  # 00:00-00:50 UTC = 02:00-02:50 CEST
    first = run_cycle(db, stream, start_from=FALL_BACK - timedelta(hours=1), **options)
    assert first["emitted"] == 6
    assert watermark(redis_client, stream) == datetime_to_us(FALL_BACK - timedelta(minutes=10), UTC)

    insert(range(7, 19), FALL_BACK)  # 01:00-02:50 UTC = 02:00-03:50 CET: wall clocks read earlier
    second = run_cycle(db, stream, **options)
    counts = Counter(int(m["pkey"]) for m in read_stream(redis_client, stream))
    assert counts == Counter(range(1, 19)), f"missing {set(range(1, 19)) - set(counts)}"
    assert second["emitted"] == 12
    assert run_cycle(db, stream, **options)["emitted"] == 0


def test_datetime0_three_edits_in_one_second_give_three_messages(databases, stream, redis_client):
    """DATETIME(0) keeps whole seconds: same-second edits share an epoch; the digest tells them apart."""
    db = databases("mariadb")
    table = db.table("id BIGINT PRIMARY KEY, name VARCHAR(50) NOT NULL, updated_at DATETIME(0) NOT NULL")
    sql = f"SELECT id, name, updated_at FROM {table} WHERE updated_at >= %(window_start)s"
    second = db.now().replace(microsecond=0, tzinfo=None)
    db.execute(f"INSERT INTO {table} VALUES (1, 'one', %s), (2, 'other', %s)", (second, second))
    assert run_cycle(db, stream, sql=sql)["emitted"] == 2
    for name in ("edit 1", "edit 2", "edit 3"):
        db.execute(f"UPDATE {table} SET name = %s, updated_at = %s WHERE id = 1", (name, second))
        figures = run_cycle(db, stream, sql=sql)
        assert (figures["emitted"], figures["duplicates"]) == (1, 1)
    assert run_cycle(db, stream, sql=sql)["emitted"] == 0
    assert run_cycle(db, stream, sql=sql)["emitted"] == 0
    ones = [m for m in read_stream(redis_client, stream) if m["pkey"] == "1"]
    assert [m["payload"].split('"name":"')[1].split('"')[0] for m in ones] == [
        "one",
        "edit 1",
        "edit 2",
        "edit 3",
    ]
    assert len({m["epoch"] for m in ones}) == 1


def test_a_row_the_whole_second_bound_re_reads_is_still_a_duplicate(source, stream, redis_client):
    """The window starts at a whole second; `seen` is trimmed below that second, not below the start."""
    t0 = source.now().replace(microsecond=0) - timedelta(minutes=10)
    lookback = timedelta(minutes=1)
    source.insert([(1, "early in its second", t0 + timedelta(microseconds=200_000))])
    source.insert([(2, "sets the watermark", t0 + lookback + timedelta(microseconds=700_000))])
    first = run_cycle(source, stream, lookback=lookback, start_from=t0 - timedelta(minutes=1))
    assert first["emitted"] == 2
    second = run_cycle(source, stream, lookback=lookback)  # starts at t0 + 0.7 s, bound at t0
    assert (second["rows_read"], second["emitted"]) == (2, 0)
