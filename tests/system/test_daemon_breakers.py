"""Circuit breakers in the real daemon: a local webhook that fails and then recovers. The
webhook breaker opens after N failed deliveries, the daemon then refuses deliveries at once
(nothing reaches the hook), reports DEGRADED in the registry and the open breaker on its
Prometheus endpoint; after the reset timeout one probe finds the hook back and closes it."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
import redis

from dsa110d.state.keys import Keys
from tests.integration.alerts.sinkservers import WebhookServer
from tests.system.daemonkit import Daemon, wait_for

pytestmark = pytest.mark.timeout(90)

FAILURE_THRESHOLD = 3
RESET_TIMEOUT_SEC = 3.0
OPEN, CLOSED = 2.0, 0.0
"""Values of the dsa110_circuit_breaker_state gauge."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gauge(port: int, name: str, label: str) -> float | None:
    """One sample of the daemon's Prometheus endpoint (None before it serves or has it)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{name}\{{{label}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def _registry(client: redis.Redis, namespace: str) -> list[dict[str, object]]:
    keys = list(client.scan_iter(match=Keys(namespace).registry_pattern()))
    return [json.loads(v) for v in client.mget(keys) if v] if keys else []  # type: ignore[union-attr]


def test_the_webhook_breaker_opens_refuses_fast_degrades_and_closes_after_recovery(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon]
) -> None:
    hook = WebhookServer(status=500)
    metrics_port = _free_port()
    try:
        env = daemon_env(
            DSA110__ALERTS__WEBHOOK__URL=hook.url,
            DSA110__ALERTS__WEBHOOK__MAX_ATTEMPTS="2",
            DSA110__ALERTS__WEBHOOK__BASE_DELAY_SEC="0.05",
            DSA110__ALERTS__DISK_FREE_MIN_FRACTION="0.999999",  # every disk is "full"
            DSA110__ALERTS__INTERVAL_SEC="0.2",
            DSA110__ALERTS__REPEAT_INTERVAL_SEC="0.5",  # a steady supply of deliveries
            DSA110__BREAKERS__FAILURE_THRESHOLD=str(FAILURE_THRESHOLD),
            DSA110__BREAKERS__RESET_TIMEOUT_SEC=str(RESET_TIMEOUT_SEC),
            DSA110__METRICS__PORT=str(metrics_port),
        )
        namespace = env["DSA110__REDIS__NAMESPACE"]
        client = redis.Redis.from_url(env["DSA110__REDIS__URL"], decode_responses=True)
        daemons.append(daemon := Daemon(env, "steady"))
        daemon.wait_event("ready", timeout=30)

        breaker = 'breaker="webhook"'
        wait_for(lambda: _gauge(metrics_port, "dsa110_circuit_breaker_state", breaker) == OPEN, 20)
        opened_at, posts_at_open = time.monotonic(), len(hook.posts)
        assert posts_at_open >= FAILURE_THRESHOLD  # it took N real failures to open
        wait_for(
            lambda: any(
                e["health"] == "DEGRADED" and "circuit 'webhook' open" in str(e["reason"])
                for e in _registry(client, namespace)
            ),
            timeout=10,
        )
        assert _gauge(metrics_port, "dsa110_service_health", 'service="steady"') == 1.0
        wait_for(lambda: len(daemon.events("alert_webhook_refused")) >= 2, timeout=10)
        refused_while_open = time.monotonic() - opened_at < RESET_TIMEOUT_SEC
        assert refused_while_open and len(hook.posts) == posts_at_open  # refused, not sent

        hook.status = 200  # the hook recovers: the half-open probe finds it
        wait_for(
            lambda: _gauge(metrics_port, "dsa110_circuit_breaker_state", breaker) == CLOSED, 20
        )
        assert time.monotonic() - opened_at >= RESET_TIMEOUT_SEC  # no probe before the timeout
        wait_for(lambda: daemon.events("alert_fire") != [] and len(hook.posts) > posts_at_open)
        wait_for(
            lambda: all(e["health"] == "HEALTHY" for e in _registry(client, namespace)),
            timeout=10,
        )
        assert _gauge(metrics_port, "dsa110_service_health", 'service="steady"') == 0.0
    finally:
        hook.close()
