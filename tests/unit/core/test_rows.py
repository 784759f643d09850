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


def test_a_payload_with_a_raw_nul_byte_is_refused_not_split():
    with pytest.raises(ValueError):
        pack_rows(["1"], [1], ["d"], [b'{"a":"\x00"}'])
