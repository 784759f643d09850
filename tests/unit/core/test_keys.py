"""A stream's keys and the way back from its ``<tag>:state`` hash to the stream (status --pattern)."""

from __future__ import annotations

import pytest

from airflow_dbstream.core.keys import StreamKeys, stream_of_state_key


@pytest.mark.parametrize("stream", ["orders", "crm.orders", "a:b/c-d", "orders{eu}", "{eu}orders", "x{}"])
def test_the_state_key_leads_back_to_its_stream(stream):
    assert stream_of_state_key(StreamKeys.for_stream(stream).state) == stream


@pytest.mark.parametrize(
    "key", ["orders", "{orders}:seen", "{orders}:state:old", ":state", "{}:state", "{bad name}:state"]
)
def test_other_keys_are_no_stream_state(key):
    assert stream_of_state_key(key) is None
