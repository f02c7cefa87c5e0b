"""Control commands as SYSTEM envelopes."""

from __future__ import annotations

import json

import pytest

from dsa110d.errors import MessageError
from dsa110d.state.control import ControlCommand


def test_control_commands_are_checked_and_addressed() -> None:
    command = ControlCommand("pause", host="corr01", service="x")
    assert command.matches("corr01", 5) and not command.matches("corr02", 5)
    raw = command.to_json()
    assert json.loads(raw)["type"] == "SYSTEM"
    assert ControlCommand.from_json(raw) == command
    bad = json.loads(raw)
    bad["payload"]["action"] = "explode"
    with pytest.raises(MessageError, match="unknown action 'explode'"):
        ControlCommand.from_json(json.dumps(bad))
    with pytest.raises(MessageError, match="bad JSON"):
        ControlCommand.from_json("{")
