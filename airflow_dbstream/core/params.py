"""The Trigger form's "Run Parameters": replay a time range, reset a stream, set start_from.

``param_specs()`` declares the form as data (``airflow_dbstream.params.stream_params`` makes Airflow
Params of it, validated by Airflow before the run is created);
``RunRequest.from_params`` checks what the form cannot (one field against another) and fails the
task with a message that says which field to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_dbstream.core.errors import DbStreamInputError

ACTIONS = ("cycle", "replay", "reset")
# ISO 8601 date and time, an optional offset (none means UTC); checked even without a format checker.
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$"


def param_specs() -> dict[str, dict[str, Any]]:
    """The trigger form's fields as plain data (default first, then Param's keywords)."""
    when = {"type": ["null", "string"], "format": "date-time", "pattern": ISO_DATETIME}
    return {
        "action": {
            "default": "cycle",
            "enum": list(ACTIONS),
            "values_display": {
                "cycle": "cycle: stream new and changed rows (what scheduled runs do)",
                "replay": "replay: send every row of a time range again, marked replay",
                "reset": "reset: forget the watermark and seen set, then run a first cycle",
            },
            "title": "Action",
            "description": "What this run does. Scheduled runs always run an ordinary cycle.",
        },
        "replay_from": {
            "default": None,
            **when,
            "title": "Replay from",
            "description": "replay only: the first modification time to send again (inclusive, UTC "
            "unless an offset is given).",
        },
        "replay_to": {
            "default": None,
            **when,
            "title": "Replay to",
            "description": "replay only: where the replay stops (exclusive); empty means now.",
        },
        "confirm_reset": {
            "default": None,
            "type": ["null", "string"],
            "title": "Confirm reset",
            "description": "reset only: type the stream's key to confirm. The stream's messages are kept; "
            "the next cycle re-sends every row from start_from.",
        },
        "start_from": {
            "default": None,
            **when,
            "title": "Start from",
            "description": "first cycle only (no watermark yet, e.g. after a reset): where it starts, "
            "instead of the DAG's start_from. Ignored once the stream has a watermark.",
        },
    }


@dataclass(frozen=True)
class RunRequest:
    """What a run was asked to do, checked; datetimes are aware (UTC when none was given)."""

    action: str = "cycle"
    replay_from: datetime | None = None
    replay_to: datetime | None = None
    start_from: datetime | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, stream: str) -> RunRequest:
        params = params or {}
        action = params.get("action") or "cycle"
        if action not in ACTIONS:
            raise DbStreamInputError(f"Param action must be one of {list(ACTIONS)}, got {action!r}.")
        replay_from = _when(params, "replay_from")
        replay_to = _when(params, "replay_to")
        start_from = _when(params, "start_from")
        if action != "replay" and (replay_from or replay_to):
            raise DbStreamInputError(
                f"replay_from/replay_to are set but action is {action!r}: choose action 'replay' "
                "to replay that range, or clear both fields."
            )
        if action == "replay":
            if replay_from is None:
                raise DbStreamInputError(
                    f"action 'replay' of stream {stream!r} needs replay_from: the first modification "
                    "time to send again, e.g. 2026-01-01T00:00:00Z."
                )
            if replay_to is not None and replay_to <= replay_from:
                raise DbStreamInputError(
                    f"replay_to ({replay_to.isoformat()}) must be after replay_from "
                    f"({replay_from.isoformat()})."
                )
            if start_from is not None:
                raise DbStreamInputError("start_from applies to a cycle or a reset, not to a replay.")
        if action == "reset" and params.get("confirm_reset") != stream:
            raise DbStreamInputError(
                f"action 'reset' forgets the watermark and seen set of stream {stream!r}, so the next "
                f"cycle re-sends every row from start_from. To confirm, set confirm_reset to {stream!r}."
            )
        if action != "reset" and params.get("confirm_reset"):
            raise DbStreamInputError(
                f"confirm_reset is set but action is {action!r}: choose action 'reset' or clear it."
            )
        return cls(action, replay_from, replay_to, start_from)


def _when(params: Mapping[str, Any], name: str) -> datetime | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise DbStreamInputError(
                f"Param {name} must be an ISO 8601 date and time such as 2026-01-01T00:00:00Z, got {value!r}."
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
