"""Where the demo keeps its results and how it serves the console while it runs."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa110d.demo import DemoPlan, console_port, demo_environ, results_location

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 21, 5, 9, tzinfo=UTC)


def test_results_are_kept_in_a_fresh_directory_unless_told(tmp_path: Path) -> None:
    assert results_location(None, None, NOW) == Path("demo-results/20261206T210509Z")
    assert results_location(tmp_path, None, NOW) == tmp_path / "results"
    assert results_location(tmp_path, tmp_path / "mine", NOW) == tmp_path / "mine"


def test_the_daemon_serves_the_console_and_writes_results_where_they_are_kept(
    tmp_path: Path,
) -> None:
    env = demo_environ(tmp_path / "scratch", DemoPlan(), tmp_path / "kept", 18111)
    assert env["DSA110__PATHS__RESULTS_DIR"] == str(tmp_path / "kept")
    assert env["DSA110__PATHS__INCOMING_DIR"] == str(tmp_path / "scratch" / "incoming")
    assert env["DSA110__SERVICES__WEB__ENABLED"] == "true"
    assert env["DSA110__SERVICES__WEB__HOST"] == "127.0.0.1"
    assert env["DSA110__SERVICES__WEB__PORT"] == "18111"


def test_a_taken_console_port_gives_way_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = console_port(port)
    assert chosen != port and 0 < chosen < 65536
