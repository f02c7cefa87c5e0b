"""A server that cannot be reached: one line on stderr and exit 3, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.integration.operations.ctlkit import ctl


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "command", [["status"], ["health"], ["queues"], ["dlq", "list"], ["recompute"]]
)
def test_unreachable_server_is_one_line_and_exit_3(tmp_path: Path, command: list[str]) -> None:
    config = make_config(tmp_path, f"redis://127.0.0.1:{closed_port()}/0")
    done = ctl(config, *command)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dsa110ctl: cannot reach the state server at redis://127.0.0.1:")
    assert "Traceback" not in done.stderr
