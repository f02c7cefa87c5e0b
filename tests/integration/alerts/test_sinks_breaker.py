"""The e-mail sink behind its circuit breaker, against real sockets: a relay that refuses
connections opens the ``email`` breaker, further alerts are refused without a connection
attempt, and once the relay is up the probe after the reset timeout delivers and closes it."""

from __future__ import annotations

import socket
import time

import anyio
import pytest

from dsa110d.alerts.sinks import AlertSinks
from dsa110d.config import AlertsConfig, EmailConfig
from dsa110d.resilience import BreakerBoard, BreakerState
from dsa110d.state.alerts import AlertEvent
from tests.integration.alerts.sinkservers import SMTPServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
FAILURE_THRESHOLD = 2
RESET_TIMEOUT_SEC = 3.0
"""Longer than the e-mail sink's longest retry delay (2 s): no probe within one delivery."""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _event(n: int) -> AlertEvent:
    now = time.time()
    return AlertEvent(f"disk:{n}", "fire", "disk_free_low", "warning", f"disk {n} full", now, now)


async def _drain(sinks: AlertSinks, handled: int) -> None:
    def done() -> int:
        return sinks.sent["email"] + sinks.refused["email"] + sinks.undelivered["email"]

    with anyio.fail_after(20):
        while done() < handled:
            await anyio.sleep(0.02)


async def test_a_dead_relay_opens_the_email_breaker_and_a_probe_closes_it() -> None:
    relay = SMTPServer()
    port = _closed_port()  # the relay is "down": connections refused
    board = BreakerBoard(FAILURE_THRESHOLD, RESET_TIMEOUT_SEC)

    def config() -> AlertsConfig:
        mail = EmailConfig(host="127.0.0.1", port=port, recipients=["ops@example.org"])
        return AlertsConfig(email=mail)

    sinks = AlertSinks(config, board)
    breaker = board.get("email")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sinks.run)
            sinks.deliver(_event(1))  # fails FAILURE_THRESHOLD times, then is refused
            await _drain(sinks, 1)
            assert breaker.state is BreakerState.OPEN
            assert breaker.snapshot().consecutive_failures == FAILURE_THRESHOLD
            sinks.deliver(_event(2))
            await _drain(sinks, 2)
            assert sinks.refused["email"] == 2 and sinks.sent["email"] == 0
            assert breaker.snapshot().consecutive_failures == FAILURE_THRESHOLD  # not tried

            port = relay.port  # the relay is back
            await anyio.sleep(RESET_TIMEOUT_SEC)
            sinks.deliver(_event(3))
            await _drain(sinks, 3)
            assert sinks.sent["email"] == 1 and breaker.snapshot().state is BreakerState.CLOSED
            assert len(relay.messages) == 1 and "disk 3 full" in relay.messages[0]
            tg.cancel_scope.cancel()
    finally:
        relay.close()
