import msgspec
import pytest

from airflow_dbstream.core.rows import pack_rows


def test_pack_rows_is_the_flat_array_of_texts_the_scripts_unpack():
    pkeys, epochs = ["1", "é,\x00 2"], [1_764_131_000_000_123, -(2**62)]
    payloads = [b'{"a":"\\u0000,"}', '{"b":"日本"}'.encode()]
    packed = pack_rows(pkeys, epochs, ["d1", "d2"], payloads)
    assert msgspec.msgpack.decode(packed) == [
        "1", "1764131000000123", "d1", '{"a":"\\u0000,"}',
        "é,\x00 2", str(-(2**62)), "d2", '{"b":"日本"}',
    ]  # fmt: skip


def test_every_payload_stays_whole_and_the_columns_must_agree():
    packed = pack_rows(["1", "2"], [1, 2], ["d", "e"], [b'{"a":"\x00,"}', b"{}"])  # a NUL splits nothing
    assert msgspec.msgpack.decode(packed) == ["1", "1", "d", '{"a":"\x00,"}', "2", "2", "e", "{}"]
    assert msgspec.msgpack.decode(pack_rows(["1"], [7], ["d"])) == ["1", "7", "d"]  # the precheck's
    with pytest.raises(ValueError):  # a column shorter than the others
        pack_rows(["1", "2"], [1, 2], ["d"], [b"{}", b"{}"])
