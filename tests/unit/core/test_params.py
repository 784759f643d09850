"""The trigger form's Params: what the form refuses, and what the task refuses with a clear message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from airflow_dbstream.core.errors import DbStreamInputError
from airflow_dbstream.core.params import RunRequest
from airflow_dbstream.params import stream_params


def _form(**values) -> dict:
    """Validate values the way the trigger form does (every Param resolved against its schema)."""
    params = ParamsDict(stream_params())
    for name, value in values.items():
        params[name] = value
    return params.validate()


def test_defaults_are_an_ordinary_cycle():
    values = _form()
    assert values == {"action": "cycle", "replay_from": None, "replay_to": None, "confirm_reset": None,
                      "start_from": None}  # fmt: skip
    assert RunRequest.from_params(values, "customers") == RunRequest()
    assert all(isinstance(p, Param) and p.description for p in stream_params().values())


@pytest.mark.parametrize(
    ("name", "value"),
    [("action", "drop"), ("replay_from", "yesterday"), ("replay_to", "2026-13"), ("start_from", 5),
     ("confirm_reset", 1)],
)  # fmt: skip
def test_the_form_refuses_bad_values(name, value):
    with pytest.raises(ParamValidationError):
        _form(**{name: value})


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00Z", "2026-01-01 00:00", "2026-01-01T00:00:00.5+02:00"])
def test_the_form_accepts_iso_datetimes(value):
    assert _form(action="replay", replay_from=value)["replay_from"] == value


def test_replay_range_is_parsed_naive_means_utc():
    request = RunRequest.from_params(
        _form(action="replay", replay_from="2026-01-01T00:00:00", replay_to="2026-01-01T02:00:00+01:00"), "s"
    )
    assert request.action == "replay"
    assert request.replay_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert request.replay_to == datetime(2026, 1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"action": "replay"}, "needs replay_from"),
        ({"action": "replay", "replay_from": "2026-01-02T00:00:00Z", "replay_to": "2026-01-01T00:00:00Z"},
         "must be after replay_from"),
        ({"action": "cycle", "replay_from": "2026-01-01T00:00:00Z"}, "choose action 'replay'"),
        ({"action": "reset"}, "set confirm_reset to 'customers'"),
        ({"action": "reset", "confirm_reset": "orders"}, "set confirm_reset to 'customers'"),
        ({"action": "cycle", "confirm_reset": "customers"}, "choose action 'reset'"),
        ({"action": "replay", "replay_from": "2026-01-01T00:00:00Z", "start_from": "2026-01-01T00:00:00Z"},
         "not to a replay"),
        ({"action": "cycle", "start_from": "soon"}, "must be an ISO 8601 date"),
    ],
)  # fmt: skip
def test_the_task_refuses_inconsistent_values_with_a_clear_error(values, message):
    with pytest.raises(DbStreamInputError, match=message):
        RunRequest.from_params(values, "customers")


def test_reset_with_confirmation_and_start_from():
    request = RunRequest.from_params(
        {"action": "reset", "confirm_reset": "customers", "start_from": "2026-03-01T00:00:00Z"}, "customers"
    )
    assert (request.action, request.start_from) == ("reset", datetime(2026, 3, 1, tzinfo=UTC))
