"""Dead letters as data: the values' text never raises, the identity follows the text, the spec checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from airflow_dbstream.core.deadletters import dead_letter, values_text
from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.keys import StreamKeys
from airflow_dbstream.core.spec import StreamSpec

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def test_values_text_is_json_of_each_values_text_and_never_raises():
    columns = ["id", "amount", "blob", "at", "odd", "lone", "none"]
    row = [1, Decimal("1.10"), b"\x00\xff", AT, Unprintable(), "\ud800", None]
    text = values_text(columns, row)
    assert text.isascii()  # a lone surrogate is escaped, so Redis gets valid UTF-8
    assert json.loads(text) == {
        "id": "1", "amount": "1.10", "blob": "AP8=", "at": "2026-01-01 12:00:00+00:00",
        "odd": "<Unprintable value that has no text form>", "lone": "\ud800", "none": None,
    }  # fmt: skip


def test_a_letter_is_identified_by_its_values_and_scored_by_epoch_or_read_clock():
    args = dict(column="id", problem="is NULL; a primary key cannot be NULL", pkey=None)
    one = dead_letter(["id", "name"], [None, "a"], epoch_us=None, read_us=99, **args)
    again = dead_letter(["id", "name"], [None, "a"], epoch_us=None, read_us=123, **args)
    other = dead_letter(["id", "name"], [None, "b"], epoch_us=5, read_us=99, **args)
    assert one.identity == again.identity != other.identity and len(one.identity) == 32
    assert (one.score_us, one.epoch_us, one.pkey) == (99, "", "")
    assert (other.score_us, other.epoch_us) == (5, "5")
    assert one.error == "Column 'id' is NULL; a primary key cannot be NULL."


def test_on_bad_row_is_checked_and_the_dead_stream_shares_the_tag():
    base = dict(
        stream="crm:{customers}", sql="", pkey_column="id", lookback=timedelta(minutes=1), variant="v"
    )
    assert StreamSpec(**base).on_bad_row == "fail" and not StreamSpec(**base).dead_letters
    assert StreamSpec(**base, on_bad_row="dead_letter").dead_letters
    with pytest.raises(
        DbStreamInputError, match=r'on_bad_row must be "fail" .* or "dead_letter" .*got \'skip\''
    ):
        StreamSpec(**base, on_bad_row="skip")
    keys = StreamKeys.for_stream("crm:{customers}")
    assert (keys.dead, keys.dead_seen) == ("crm:{customers}:dead", "crm:{customers}:dead_seen")
    assert StreamKeys.for_stream("orders").dead == "{orders}:dead"
