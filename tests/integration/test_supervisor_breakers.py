"""The daemon's heartbeats go through the ``state_server`` breaker: against a server that is
not there (a closed loopback port: real connection refusals), the breaker opens after N
failures, later heartbeats are refused without trying it, the services are DEGRADED, and after the
reset timeout one probe tries again."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from dsa110d.resilience import BreakerState, state_server_breaker
from dsa110d.services.base import Health, load_service_modules
from dsa110d.state.connection import client_for
from dsa110d.supervisor import ServiceManager
from dsa110d.workers import WorkerPool
from tests.conftest import make_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
FAILURE_THRESHOLD = 3
RESET_TIMEOUT_SEC = 1.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is


async def test_heartbeats_fail_fast_while_the_state_server_breaker_is_open(tmp_path: Path) -> None:
    load_service_modules()
    config = make_config(
        tmp_path, f"redis://127.0.0.1:{_closed_port()}/0",
        breakers__failure_threshold=FAILURE_THRESHOLD,
        breakers__reset_timeout_sec=RESET_TIMEOUT_SEC,
        redis__socket_connect_timeout=2, redis__retry_on_timeout=False,
    )  # fmt: skip
    redis = client_for(config)
    send, events = anyio.create_memory_object_stream[tuple[str, str]](4)
    manager = ServiceManager(config, redis, WorkerPool(1), ["watcher"], send)
    breaker = state_server_breaker(manager.breakers, config)
    try:
        for _ in range(FAILURE_THRESHOLD):
            await manager.publish_heartbeats()
        assert breaker.state is BreakerState.OPEN
        assert manager.server_problem == "state server unreachable"

        await manager.publish_heartbeats()  # refused by the breaker: the server is not tried
        assert breaker.snapshot().consecutive_failures == FAILURE_THRESHOLD

        slot = manager.slots["watcher"]
        slot.state, slot.service = "running", slot.cls()
        report = manager.slot_health(slot)
        assert report.health is Health.DEGRADED

        await anyio.sleep(RESET_TIMEOUT_SEC)
        assert breaker.snapshot().state is BreakerState.HALF_OPEN  # read afresh: not narrowed
        await manager.publish_heartbeats()  # the probe: tried, refused, open again
        assert breaker.snapshot().consecutive_failures == FAILURE_THRESHOLD + 1
        assert breaker.state is BreakerState.OPEN
    finally:
        await redis.aclose()
        send.close()
        events.close()
