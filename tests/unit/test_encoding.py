import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from airflow_dbstream.encoding import RowEncoder, iso_duration
from airflow_dbstream.errors import DbStreamInputError


def encoder(columns=("id", "name", "updated_at"), pkey=("id",), tz=UTC):
    return RowEncoder("customers", list(columns), list(pkey), "updated_at", tz, None)


AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_payload_keeps_column_order_and_is_deterministic():
    first = encoder().encode((1, "Ada", AT), 1)
    again = encoder().encode((1, "Ada", AT), 1)
    assert first.payload == b'{"id":1,"name":"Ada","updated_at":"2026-01-01T12:00:00+00:00"}'
    assert first.digest == again.digest and len(first.digest) == 16
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
        RowEncoder("customers", ["id", "name"], ["id"], "updated_at", UTC, None)


def test_null_key_and_unencodable_value_name_column_and_row():
    with pytest.raises(DbStreamInputError, match=r"column 'id' of row 3 is NULL"):
        encoder().encode((None, "x", AT), 3)
    with pytest.raises(DbStreamInputError, match=r"column 'name' of row 4 \(pkey '1'\).*no exact JSON form"):
        encoder().encode((1, object(), AT), 4)
