import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.core.encoding import iso_duration
from airflow_dbstream.core.errors import BadRowError, DbStreamInputError
from airflow_dbstream.core.rows import RowEncoder
from airflow_dbstream.core.spec import StreamSpec


def spec(pkey=("id",), tz=UTC) -> StreamSpec:
    made = StreamSpec(stream="customers", sql="", pkey_column=list(pkey), epoch_column="updated_at",
                      lookback=timedelta(minutes=1), variant="v1")  # fmt: skip
    # Any tzinfo, fixed offsets too: the driver's aware values carry them, and naive values are read in it.
    object.__setattr__(made, "tz", tz)
    return made


def encoder(columns=("id", "name", "updated_at"), pkey=("id",), tz=UTC):
    return RowEncoder(spec(pkey, tz), list(columns))


AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_payload_keeps_column_order_and_is_deterministic():
    first = encoder().encode((1, "Ada", AT), 1)
    again = encoder().encode((1, "Ada", AT), 1)
    assert first.payload == b'{"id":1,"name":"Ada","updated_at":"2026-01-01T12:00:00Z"}'
    assert first.digest == again.digest and len(first.digest) == 32 and int(first.digest, 16) >= 0
    assert encoder().encode((1, "Adb", AT), 1).digest != first.digest


def test_exact_encodings():
    columns = (
        "id",
        "amount",
        "blob",
        "uid",
        "doc",
        "day",
        "clock",
        "span",
        "naive",
        "big",
        "nan",
        "updated_at",
    )
    row = (
        1, Decimal("10.10"), b"\x00\xff", uuid.UUID(int=1), {"b": [1, 2], "a": None}, date(2026, 1, 2),
        time(3, 4, 5, 6), timedelta(days=1, seconds=1, microseconds=5), datetime(2026, 7, 1, 14, 0),
        2**63 - 1, float("nan"), AT,
    )  # fmt: skip
    payload = json.loads(encoder(columns, tz=ZoneInfo("Europe/Paris")).encode(row, 1).payload)
    assert payload["amount"] == "10.10"
    assert payload["blob"] == "AP8="
    assert payload["uid"] == "00000000-0000-0000-0000-000000000001"
    assert payload["doc"] == {"b": [1, 2], "a": None}
    assert payload["day"] == "2026-01-02" and payload["clock"] == "03:04:05.000006"
    assert payload["span"] == "P1DT1.000005S"
    assert payload["naive"] == "2026-07-01T14:00:00+02:00"
    assert payload["big"] == 2**63 - 1
    assert payload["nan"] == "NaN"


def test_float_text_is_exact_and_shortest():
    row = (1, 0.1, 1e16, -2.5e-7, 5e-324, 2**53 + 1.0, AT)
    columns = ("id", "a", "b", "c", "d", "e", "updated_at")
    payload = encoder(columns).encode(row, 1).payload
    assert payload.startswith(b'{"id":1,"a":0.1,"b":1e16,"c":-2.5e-7,"d":5e-324,"e":9007199254740992.0,')
    assert json.loads(payload)["c"] == -2.5e-7


def test_datetime_offsets_are_exact_even_in_seconds():
    paris = ZoneInfo("Europe/Paris")
    row = (1, datetime(1900, 1, 1, 12, tzinfo=paris), datetime(2026, 7, 1, 12, tzinfo=paris))
    payload = json.loads(encoder(("id", "lmt", "updated_at"), tz=paris).encode_batch([row], 1)[0].payload)
    assert payload == {
        "id": 1,
        "lmt": "1900-01-01T12:00:00+00:09:21",
        "updated_at": "2026-07-01T12:00:00+02:00",
    }


def test_typed_digest_tells_apart_what_json_would_blur():
    columns = ("id", "v", "updated_at")
    one = encoder(columns)
    values = [1, 1.0, "1", Decimal("1"), True, None, datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC),
              b"1", [1], {"1": 1}, 2**64, str(2**64), uuid.UUID(int=1), str(uuid.UUID(int=1))]  # fmt: skip
    digests = [one.encode((7, v, AT), 1).digest for v in values]
    assert len(set(digests)) == len(values)
    # NULL is not an absent column, and the column names are in the digest
    assert one.encode((7, None, AT), 1).digest != encoder(("id", "updated_at")).encode((7, AT), 1).digest
    assert encoder(("id", "w", "updated_at")).encode((7, 1, AT), 1).digest != digests[0]
    # the same values give the same digest, in a batch or alone, in any process (the format is pinned)
    rows = [(7, v, AT) for v in values]
    assert [v.digest for v in one.versions(rows, 1)] == digests
    assert digests[0] == "0395351d87031474e21bca8da88659fc"


def test_iso_duration():
    assert iso_duration(timedelta(seconds=90)) == "PT90S"
    assert iso_duration(timedelta(microseconds=-1)) == "-PT0.000001S"


def test_pkeys_single_composite_and_big():
    assert encoder().encode((2**60 + 1, "x", AT), 1).pkey == str(2**60 + 1)
    assert encoder().encode(("eu:id 7 é", "x", AT), 1).pkey == "eu:id 7 é"
    composite = encoder(("region", "id", "updated_at"), ("region", "id")).encode(("eu", 7, AT), 1)
    assert json.loads(composite.pkey) == ["eu", 7]


def test_missing_columns_list_what_the_query_returned():
    with pytest.raises(DbStreamInputError, match=r"no column 'updated_at'.*returned \['id', 'name'\]"):
        RowEncoder(spec(), ["id", "name"])


def test_null_key_and_unencodable_value_name_column_and_row():
    with pytest.raises(DbStreamInputError, match=r"column 'id' of row 3 is NULL"):
        encoder().encode((None, "x", AT), 3)
    with pytest.raises(DbStreamInputError, match=r"column 'name' of row 4 \(pkey '1'\).*no exact JSON form"):
        encoder().encode((1, object(), AT), 4)


def test_encode_batch_gives_exactly_what_encode_gives():
    columns = ("id", "amount", "uid", "day", "naive", "score", "doc", "updated_at")
    tz = ZoneInfo("Europe/Paris")
    rows = [
        (1, Decimal("1.10"), uuid.UUID(int=1), date(2026, 1, 2), datetime(2026, 7, 1, 14), 0.1, {"a": 1}, AT),
        (2, None, None, None, None, float("nan"), None, AT + timedelta(microseconds=1)),
        (3, 7, "not a uuid", datetime(2026, 1, 2, 3), AT, float("-inf"), [1, "é"], datetime(2026, 2, 1)),
        (2**70, Decimal("-0E+3"), uuid.UUID(int=2), date.min, datetime.max, 1e16, 'x\n"', AT),
    ]
    one = encoder(columns, tz=tz)
    assert one.encode_batch(rows, 1) == [one.encode(row, i) for i, row in enumerate(rows, 1)]
    assert one.encode_batch([], 1) == []
    composite = encoder(("region", "id", "updated_at"), ("region", "id"))
    batch = [("eu", 7, AT), ("us", True, AT)]
    assert composite.encode_batch(batch, 1) == [composite.encode(row, i) for i, row in enumerate(batch, 1)]


def test_encode_batch_names_the_bad_row():
    rows = [(1, "a", AT), (2, "b", AT), (None, "c", AT)]
    with pytest.raises(DbStreamInputError, match=r"column 'id' of row 12 is NULL"):
        encoder().encode_batch(rows, 10)
    with pytest.raises(DbStreamInputError, match=r"column 'updated_at' of row 6 \(pkey '2'\) is NULL"):
        encoder().encode_batch([(1, "a", AT), (2, "b", None)], 5)
    with pytest.raises(DbStreamInputError, match=r"column 'name' of row 2 \(pkey '2'\).*no exact JSON form"):
        encoder().encode_batch([(1, "a", AT), (2, object(), AT)], 1)


def reference_payload(columns, row, tz) -> str:
    """The README's encoding, by the standard library's json: the yardstick of the msgspec encoder."""
    import base64
    import math

    def iso(value):  # a zero offset is written Z
        text = value.isoformat()
        return text.removesuffix("+00:00") + "Z" if value.utcoffset() == timedelta(0) else text

    def exact(value):
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, datetime):
            return iso(value if value.tzinfo else value.replace(tzinfo=tz))
        if isinstance(value, time) and value.tzinfo:
            return iso(value)
        if isinstance(value, date | time):
            return value.isoformat()
        if isinstance(value, timedelta):
            return iso_duration(value)
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, Decimal | uuid.UUID):
            return str(value)
        if isinstance(value, list | tuple):
            return [exact(v) for v in value]
        if isinstance(value, dict):
            return {k: exact(v) for k, v in value.items()}
        return value

    record = {c: exact(v) for c, v in zip(columns, row, strict=True)}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def test_batch_and_row_encodings_agree_on_random_batches():
    import random

    rng = random.Random(5)
    paris = ZoneInfo("Europe/Paris")
    makers = [
        lambda: rng.randrange(-(10**20), 10**20),
        lambda: rng.choice(["", 'é"\\\n\t\x00%s', "plain", "日本"]),
        lambda: rng.choice([True, False]),
        lambda: rng.choice([0.1, -2.5e-7, 1e16, 3.0, 1 / 3]),
        lambda: Decimal(rng.choice(["1.10", "-0", "1E+5", "123456789.000001"])),
        lambda: uuid.UUID(int=rng.randrange(2**128)),
        lambda: date(rng.randrange(1, 9999), 1, 31),
        lambda: datetime(2026, 3, 29, 2, 30, rng.randrange(60), rng.randrange(10**6), tzinfo=paris),
        lambda: datetime(2026, 10, 25, 2, 30, rng.randrange(60)),  # naive, ambiguous in Paris
        lambda: {"k": [1, None, "x"]},
        lambda: b"\x00\xff",
        lambda: timedelta(seconds=rng.randrange(10**6)),
        # datetimes in one fixed-offset zone (the column-wise path without isoformat), whole seconds too
        lambda: datetime(2026, 1, 1, tzinfo=zone) + timedelta(microseconds=rng.choice([0, 10**6, 7, -5])),
        lambda: (
            datetime(1, 1, 1, 12) + timedelta(seconds=rng.randrange(10**11), microseconds=rng.randrange(2))
        ),
        lambda: rng.choice([0.5, 3.0, 1e16, -2.5e-7]),  # few distinct floats: one text each
        lambda: rng.choice([0.0, -0.0, 1.5]),  # equal as keys, not as texts
        lambda: date(2020, 1, rng.randrange(1, 4)),  # few distinct dates
        lambda: [rng.choice([1.5, float("nan"), None]), datetime(2026, 1, 1, 3)],  # an array: NaN, naive
        lambda: 2**64 + rng.randrange(10),  # beyond 64 bits
        lambda: datetime(1900, 1, 1, 12, tzinfo=paris),  # LMT: an offset with seconds
        lambda: time(1, 2, 3, tzinfo=UTC),  # timetz
    ]
    zones = [paris, UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"), timezone(timedelta(hours=-5, minutes=-30))]
    for _ in range(300):
        zone = rng.choice(zones)  # the source_timezone, and the zone of the fixed-offset datetimes
        picks = [rng.randrange(len(makers)) for _ in range(rng.randrange(1, 6))]
        null_rate = rng.choice([0, 0, 0.2])

        def value(k, null_rate=null_rate):
            return None if rng.random() < null_rate else makers[k]()

        mixed = rng.random() < 0.2
        columns = ["id", *(f"c{i}%" for i in range(len(picks))), "updated_at"]
        rows = [
            (
                n,
                *(value(rng.randrange(len(makers)) if mixed else k) for k in picks),
                AT + timedelta(microseconds=rng.randrange(10**9)),
            )
            for n in range(rng.randrange(1, 80))
        ]
        if rng.random() < 0.3:  # the epoch column in the fixed-offset zone too
            rows = [(*row[:-1], datetime(2026, 1, 1, tzinfo=zone) + (row[-1] - AT)) for row in rows]
        one = encoder(columns, tz=zone)
        expected = [one.encode(row, n) for n, row in enumerate(rows, 1)]
        assert one.encode_batch(rows, 1) == expected
        # the payload is what the standard library writes for the values as the README specifies them
        for message, row in zip(expected, rows, strict=True):
            assert json.loads(message.payload) == json.loads(reference_payload(columns, row, zone))


def test_an_unencodable_key_names_its_column_type_and_what_to_do():
    """Not a bare Unencodable: the column, the value's type and the cast, with the row's own fields."""
    for one in (encoder(), encoder(("region", "id", "updated_at"), ("region", "id"))):
        row = (object(), 1, AT) if len(one.pkey_columns) == 1 else ("eu", object(), AT)
        column = one.pkey_columns[-1]
        with pytest.raises(BadRowError) as err:
            one.encode_batch([row], 7)
        assert (
            f"column {column!r} of row 7 object value has no exact JSON form, so it cannot be a pkey"
            in str(err.value)
        )
        assert "cast it in the SQL (e.g. to text)" in str(err.value)
        assert (err.value.column, err.value.pkey) == (column, None)


def test_row_errors_carry_their_column_problem_and_pkey():
    with pytest.raises(BadRowError) as err:
        encoder().encode_batch([(1, "a", AT), (2, "b", None)], 1)
    assert (err.value.column, err.value.pkey, err.value.problem) == (
        "updated_at", "2", "is NULL; every row needs its epoch"
    )  # fmt: skip
    with pytest.raises(DbStreamInputError) as missing:
        RowEncoder(spec(), ["id", "name"])
    assert not isinstance(missing.value, BadRowError)  # a whole-query problem: never dead-lettered


def test_json_text_is_embedded_as_it_is_and_digested_as_json():
    from airflow_dbstream.core.encoding import JsonText

    columns = ("id", "doc", "updated_at")
    one = encoder(columns)
    text = JsonText(b'{"a": [1, 2.50]}')
    message = one.encode((1, text, AT), 1)
    assert message.payload == b'{"id":1,"doc":{"a": [1, 2.50]},"updated_at":"2026-01-01T12:00:00Z"}'
    assert one.encode_batch([(1, text, AT)], 1) == [message]
    as_string = one.encode((1, text.decode(), AT), 1)
    assert as_string.digest != message.digest  # the same text as a string column is another value
    assert one.encode((1, JsonText(b'{"a": [1, 2.5]}'), AT), 1).digest != message.digest


def test_a_batch_of_floats_writes_non_finite_values_as_text_and_huge_ones_exactly():
    one = encoder(("id", "x", "updated_at"))
    batches = {
        "finite": [1.5, -0.0, 2.5e-300],
        "huge": [1e308, 1e308, -1.7976931348623157e308],  # their sum overflows; each is finite
        "nan": [1.5, float("nan"), 2.0],
        "infinite": [float("inf"), 1.0, float("-inf")],
    }
    for name, floats in batches.items():
        rows = [(i, x, AT) for i, x in enumerate(floats)]
        written = [json.loads(m.payload)["x"] for m in one.encode_batch(rows, 1)]
        expected = [json.loads(one.encode(row, 1).payload)["x"] for row in rows]
        assert written == expected, name
    assert [json.loads(m.payload)["x"] for m in one.encode_batch([(1, 1e308, AT), (2, 1e308, AT)], 1)] == [
        1e308
    ] * 2
    nan_batch = one.encode_batch([(1, float("nan"), AT), (2, float("inf"), AT), (3, 1.0, AT)], 1)
    assert [json.loads(m.payload)["x"] for m in nan_batch] == ["NaN", "Infinity", 1.0]
