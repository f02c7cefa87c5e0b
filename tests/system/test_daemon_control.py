"""A running daemon seen from outside: registry entries, the Prometheus endpoint, and
control commands (pause, resume, restart)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.system.daemonkit import SERVICES_YAML, Daemon, lines_of, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_registry_prometheus_and_control_of_a_running_daemon(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    import urllib.request

    import anyio

    from dsa110d.config import load_config
    from dsa110d.state.connection import connected
    from dsa110d.state.control import ControlChannel, ControlCommand, fresh_status
    from dsa110d.state.keys import Keys
    from dsa110d.state.registry import Registry

    port = _free_port()
    env = daemon_env(DSA110__METRICS__PORT=port, DSA110_TEST_CRASH_AFTER=60)
    config = load_config(SERVICES_YAML, "testing", env)
    daemons.append(daemon := Daemon(env, "steady,crashy"))
    daemon.wait_event("ready")

    async def entries() -> dict[str, object]:
        async with connected(config) as redis:
            found = await Registry(redis, Keys(config.redis.namespace)).entries()
        return {e.service: e for e in found}

    async def send(action: str, service: str) -> None:
        async with connected(config) as redis:
            channel = ControlChannel(redis, Keys(config.redis.namespace))
            await channel.send(ControlCommand(action, host=socket.gethostname(), service=service))  # type: ignore[arg-type]

    found = anyio.run(entries)
    steady = found["steady"]
    assert steady.pid == daemon.proc.pid and steady.health == "HEALTHY"  # type: ignore[attr-defined]
    assert steady.metrics["process"]["rss_bytes"] > 0  # type: ignore[attr-defined]
    wait_for(lambda: anyio.run(entries)["steady"].metrics["processed"] > 3)  # type: ignore[attr-defined]

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'dsa110_jobs_processed_total{service="steady"}' in body
    assert 'dsa110_service_restarts_total{service="crashy"}' in body
    assert "dsa110_process_resident_memory_bytes" in body

    anyio.run(send, "pause", "steady")
    wait_for(lambda: anyio.run(entries)["steady"].state == "paused")  # type: ignore[attr-defined]
    ticks = len(lines_of(tmp_path / "steady.ticks"))
    time.sleep(0.5)
    assert len(lines_of(tmp_path / "steady.ticks")) == ticks
    anyio.run(send, "resume", "steady")
    wait_for(lambda: len(lines_of(tmp_path / "steady.ticks")) > ticks)
    anyio.run(send, "restart", "steady")
    daemon.wait_event("service_restarted")

    async def status() -> list[object]:
        async with connected(config) as redis:
            return await fresh_status(redis, Keys(config.redis.namespace))  # type: ignore[return-value]

    assert {e.service for e in anyio.run(status)} == {"steady", "crashy"}  # type: ignore[attr-defined]
    assert daemon.stop() == 0
    assert anyio.run(entries) == {}  # a clean stop deregisters at once
