from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from airflow_dbstream.core.digest import Digester, column_types
from airflow_dbstream.core.rows import Version, Versions, pack_rows, pack_versions


def test_pack_rows_is_the_flat_array_of_texts_the_scripts_unpack():
    pkeys, epochs = ["1", "é,\x00 2"], [1_764_131_000_000_123, -(2**62)]
    payloads = [b'{"a":"\\u0000,"}', '{"b":"日本"}'.encode()]
    packed = pack_rows(pkeys, epochs, ["d1", "d2"], payloads)  # the digests go as versions, epoch:digest
    assert msgspec.msgpack.decode(packed) == [
        "1", "1764131000000123", "1764131000000123:d1", '{"a":"\\u0000,"}',
        "é,\x00 2", str(-(2**62)), f"{-(2**62)}:d2", '{"b":"日本"}',
    ]  # fmt: skip
    replay = pack_rows(pkeys, epochs, ["", "delete"], payloads, versions=False)  # a replay's ops as they are
    assert msgspec.msgpack.decode(replay)[2::4] == ["", "delete"]


def test_every_payload_stays_whole_and_the_columns_must_agree():
    packed = pack_rows(["1", "2"], [1, 2], ["d", "e"], [b'{"a":"\x00,"}', b"{}"])  # a NUL splits nothing
    assert msgspec.msgpack.decode(packed) == ["1", "1", "1:d", '{"a":"\x00,"}', "2", "2", "2:e", "{}"]
    assert msgspec.msgpack.decode(pack_versions(["1", "2"], [7, -8], ["d", "e"])) == ["1", "7:d", "2", "-8:e"]
    with pytest.raises(ValueError):  # a column shorter than the others
        pack_rows(["1", "2"], [1, 2], ["d"], [b"{}", b"{}"])


def test_a_batch_whose_column_types_vary_digests_each_row_as_alone():
    """Columns of one type share a seed; a NULLable or mixed column gives its rows their own type tuple."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    digester = Digester(["id", "v", "w", "updated_at"])
    batches = [
        [(1, "a", Decimal("1.5"), at), (2, "b", Decimal("2"), at)],  # one type per column
        [(1, None, "a", at), (2, 5, None, at), (3, 5, "b", at), (4, None, None, at), (5, 5.0, "5", at)],
    ]
    for rows in batches:
        columns = list(zip(*rows, strict=True))
        digests = digester.many(rows, columns, column_types(columns))
        assert digests == [digester.one(row) for row in rows]
    assert len(set(digests)) == 5  # the mixed batch's rows all differ


def test_versions_are_column_wise_and_pick_keeps_the_types():
    versions = Versions(["a", "b", "c"], [1, 2, 3], ["x", "y", "z"], [{int}, {str}])
    assert len(versions) == 3 and list(versions) == [
        Version("a", 1, "x"),
        Version("b", 2, "y"),
        Version("c", 3, "z"),
    ]
    assert versions.pick(range(3)) is versions
    picked = versions.pick([0, 2])
    assert (picked.pkeys, picked.epochs_us, picked.digests, picked.types) == (
        ["a", "c"],
        [1, 3],
        ["x", "z"],
        [{int}, {str}],
    )
    assert list(Versions.of([Version("a", 1, "x")])) == [Version("a", 1, "x")] and len(Versions.of([])) == 0
    with pytest.raises(ValueError, match="differ in number"):
        Versions(["a"], [1, 2], ["x"])
