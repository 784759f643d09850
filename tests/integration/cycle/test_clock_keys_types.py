"""The database clock, keys of every shape and payload types, on Postgres, MariaDB and SQLite."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from airflow_dbstream.core.encoding import iso_duration
from airflow_dbstream.core.epoch import datetime_to_us
from tests.integration.conftest import read_stream, run_cycle, watermark

pytestmark = pytest.mark.integration

KINDS = ["postgres", "mariadb", "sqlite"]
STAMP_TYPE = {"postgres": "timestamptz", "mariadb": "DATETIME(6)", "sqlite": "TEXT"}


def stamp(kind: str, at: datetime):
    """A UTC instant in the form the table's updated_at column stores."""
    if kind == "postgres":
        return at
    naive = at.astimezone(UTC).replace(tzinfo=None)
    return naive if kind == "mariadb" else naive.isoformat(sep=" ", timespec="microseconds")


def test_worker_clock_two_hours_ahead_loses_and_duplicates_nothing(source, stream, redis_client, monkeypatch):
    """window_end and the watermark's cap come from the database; the worker's clock is patched ahead."""
    from airflow_dbstream.cycle import runner

    ahead = timedelta(hours=2)
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + ahead.total_seconds())
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(ahead.total_seconds()) * 10**9)

    class WorkerDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + ahead

    monkeypatch.setattr(runner, "datetime", WorkerDatetime)
    lookback = timedelta(minutes=15)

    source.insert([(i, f"c{i}", source.now() - timedelta(minutes=1)) for i in range(1, 21)])
    first = run_cycle(source, stream, lookback=lookback)
    assert first["emitted"] == 20
    window_end = datetime.fromisoformat(first["window_end"])
    assert abs(window_end - source.now()) < timedelta(minutes=1), "window_end is not the database's clock"

    source.insert([(100, "90 minutes ahead", source.now() + timedelta(minutes=90))])
    source.insert([(101, "30 days ahead", source.now() + timedelta(days=30))])
    assert run_cycle(source, stream, lookback=lookback)["emitted"] == 2
    assert watermark(redis_client, stream) <= datetime_to_us(source.now(), UTC)

    source.insert([(102, "normal change", source.now())])
    source.set(5, "changed", source.now())
    assert run_cycle(source, stream, lookback=lookback)["emitted"] == 2
    assert run_cycle(source, stream, lookback=lookback)["emitted"] == 0
    counts = Counter(m["pkey"] for m in read_stream(redis_client, stream))
    assert counts == Counter({**{str(i): 1 for i in range(1, 21)}, "5": 2, "100": 1, "101": 1, "102": 1})


REGIONS = ["eu:west", "a b  c", "ünïcødé ✓ 😀", "x{tag}:y", "k" * 1024]
IDS = [1, 2**53 + 1, 2**63 - 1]


@pytest.mark.parametrize("kind", KINDS)
def test_composite_and_awkward_keys_are_exact(kind, databases, stream, redis_client):
    db = databases(kind)
    table = db.table(
        f"region VARCHAR(1100) NOT NULL, id BIGINT NOT NULL, n INT, updated_at {STAMP_TYPE[kind]}"
    )
    sql = f"SELECT region, id, n, updated_at FROM {table} WHERE updated_at >= {db.param('window_start')}"
    at = stamp(kind, db.now() - timedelta(seconds=5))
    db.executemany(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", [(r, i, 0, at) for r in REGIONS for i in IDS]
    )
    options = dict(sql=sql, pkey_column=["region", "id"])

    assert run_cycle(db, stream, **options)["emitted"] == len(REGIONS) * len(IDS)
    messages = read_stream(redis_client, stream)
    expected = {json.dumps([r, i], ensure_ascii=False, separators=(",", ":")) for r in REGIONS for i in IDS}
    assert {m["pkey"] for m in messages} == expected
    assert {(p["region"], p["id"]) for p in map(json.loads, (m["payload"] for m in messages))} == {
        (r, i) for r in REGIONS for i in IDS
    }
    assert run_cycle(db, stream, **options)["emitted"] == 0

    db.execute(f"UPDATE {table} SET n = 1 WHERE region = %s AND id = %s", (REGIONS[4], IDS[2]))
    assert run_cycle(db, stream, **options)["emitted"] == 1
    assert read_stream(redis_client, stream)[-1]["pkey"] == f'["{"k" * 1024}",{2**63 - 1}]'

    single = run_cycle(db, f"{stream}:single", sql=sql + " AND region = 'k'", pkey_column="id")
    assert single["emitted"] == 0  # no such region: nothing, and no error
    bigs = run_cycle(db, f"{stream}:big", sql=sql + " AND region = 'eu:west'", pkey_column="id")
    assert bigs["emitted"] == 3
    assert {m["pkey"] for m in read_stream(redis_client, f"{stream}:big")} == {str(i) for i in IDS}
    redis_client.delete(f"{stream}:single", f"{stream}:big", *(f"{{{stream}:{s}}}:{k}"
                        for s in ("single", "big") for k in ("seen", "digest", "state")))  # fmt: skip


UID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
BIG_DECIMAL = "12345678901234567890.0123456789"
TYPES = {
    "postgres": (
        "id BIGINT, amount NUMERIC(38, 10), nan_amount NUMERIC, raw BYTEA, uid UUID, doc JSON, docb JSONB, "
        "ints INT[], tags TEXT[], f_nan FLOAT8, f_inf FLOAT8, f_ninf FLOAT8, t TIME, ttz TIMETZ, "
        "iv INTERVAL, absent TEXT, exact JSONB, updated_at TIMESTAMPTZ",
        f"1, '{BIG_DECIMAL}', 'NaN', '\\x00ff10'::bytea, '{UID}', '{{\"b\": 1, \"a\": [1, 2.5, \"x\"]}}', "
        "'{\"b\": 1, \"a\": {\"c\": null}}', '{1,2,3}', '{\"x y\",z}', 'NaN', 'Infinity', '-Infinity', "
        f"'13:45:30.123456', '13:45:30+02', '1 day 02:03:04.5', NULL, '{{\"n\": {BIG_DECIMAL}}}'",
        {
            "id": 1, "amount": BIG_DECIMAL, "nan_amount": "NaN", "raw": "AP8Q", "uid": str(UID),
            "doc": {"b": 1, "a": [1, 2.5, "x"]}, "docb": {"a": {"c": None}, "b": 1}, "ints": [1, 2, 3],
            "tags": ["x y", "z"], "f_nan": "NaN", "f_inf": "Infinity", "f_ninf": "-Infinity",
            "t": "13:45:30.123456", "ttz": "13:45:30+02:00", "iv": "P1DT7384.5S", "absent": None,
            "exact": {"n": float(BIG_DECIMAL)},
        },
    ),
    "mariadb": (
        "id BIGINT, amount DECIMAL(38, 10), raw BLOB, uid UUID, doc JSON, f DOUBLE, t TIME(6), neg_t TIME, "
        "y YEAR, b BIT(8), e ENUM('a', 'b'), absent TEXT, updated_at DATETIME(6)",
        f"1, '{BIG_DECIMAL}', x'00ff10', '{UID}', '{{\"b\": 1, \"a\": [1, 2.5]}}', 0.1, '13:45:30.123456', "
        "'-838:59:59', 2026, b'10100101', 'b', NULL",
        {
            "id": 1, "amount": BIG_DECIMAL, "raw": "AP8Q", "uid": str(UID), "doc": '{"b": 1, "a": [1, 2.5]}',
            "f": 0.1, "t": iso_duration(timedelta(hours=13, minutes=45, seconds=30, microseconds=123456)),
            "neg_t": iso_duration(-timedelta(hours=838, minutes=59, seconds=59)), "y": 2026,
            "b": base64.b64encode(b"\xa5").decode(), "e": "b", "absent": None,
        },
    ),
    "sqlite": (
        "id INTEGER, amount TEXT, raw BLOB, doc TEXT, f REAL, f_inf REAL, big INTEGER, absent TEXT, "
        "updated_at TEXT",
        f"1, '{BIG_DECIMAL}', x'00ff10', '{{\"b\": 1}}', 0.1, 9e999, {2**63 - 1}, NULL",
        {
            "id": 1, "amount": BIG_DECIMAL, "raw": "AP8Q", "doc": '{"b": 1}', "f": 0.1, "f_inf": "Infinity",
            "big": 2**63 - 1, "absent": None,
        },
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_payload_types_are_exact_and_deterministic(kind, databases, stream, redis_client):
    columns, values, expected = TYPES[kind]
    db = databases(kind)
    table = db.table(columns)
    at = db.now() - timedelta(seconds=5)
    db.execute(f"INSERT INTO {table} VALUES ({values}, %s)", (stamp(kind, at),))
    sql = f"SELECT * FROM {table} WHERE updated_at >= {db.param('window_start')}"

    assert run_cycle(db, stream, sql=sql)["emitted"] == 1
    (message,) = read_stream(redis_client, stream)
    payload = json.loads(message["payload"])
    assert list(payload) == [*expected, "updated_at"]  # column order kept
    assert {k: v for k, v in payload.items() if k != "updated_at"} == expected
    assert f'"amount":"{BIG_DECIMAL}"' in message["payload"]
    if kind == "postgres":  # json/jsonb embedded as Postgres wrote them: a number keeps all its digits
        assert f'"exact":{{"n": {BIG_DECIMAL}}}' in message["payload"]
    assert int(message["epoch"]) == datetime_to_us(at, UTC)

    db.execute(f"UPDATE {table} SET id = id")  # touched, unchanged, same timestamp
    for batch_size in (1, 1000):  # a fresh connection each cycle: the same digest every time
        assert run_cycle(db, stream, sql=sql, batch_size=batch_size)["emitted"] == 0


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_json_columns_arrive_as_their_text_with_either_driver(driver):
    """Neither parsed by the driver nor encoded again: the payload embeds Postgres's own text."""
    import importlib

    from airflow_dbstream.core.encoding import JsonText, PayloadEncoder
    from airflow_dbstream.cycle.sources import json_as_text
    from tests.integration.conftest import PG_DSN

    conn = importlib.import_module(driver).connect(PG_DSN)
    try:
        json_as_text(conn)
        cursor = conn.cursor()
        cursor.execute(
            """SELECT '{"b": [1, 2.50]}'::json, '{"n": 0.10000000000000000001}'::jsonb, ARRAY['[1]'::jsonb]"""
        )
        doc, docb, docs = cursor.fetchone()
    finally:
        conn.close()
    assert (type(doc), type(docb), type(docs[0])) == (JsonText, JsonText, JsonText)
    payload = PayloadEncoder(["doc", "docb", "docs"], UTC).payload((doc, docb, docs))
    assert payload == b'{"doc":{"b": [1, 2.50]},"docb":{"n": 0.10000000000000000001},"docs":[[1]]}'
