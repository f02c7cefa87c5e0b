"""Pure pieces of the daemon: backoff, health aggregation, notify addresses, metrics, commands."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from dsa110d.errors import MessageError
from dsa110d.metrics import ServiceMetrics
from dsa110d.notify import Notifier, socket_address, watchdog_period
from dsa110d.services.base import Health, HealthReport, worst
from dsa110d.state.control import ControlCommand
from dsa110d.supervisor import backoff_delay


def test_backoff_grows_exponentially_with_jitter_and_stops_at_the_cap() -> None:
    assert backoff_delay(0, 0.5, 30, lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30, lambda: 1.0) == 4.0
    assert backoff_delay(3, 0.5, 30, lambda: 0.0) == 2.0  # jitter: down to half
    assert backoff_delay(100, 0.5, 30, lambda: 1.0) == 30


def test_the_worst_health_wins_and_names_its_service() -> None:
    reports = [
        ("watcher", HealthReport.healthy()),
        ("processor", HealthReport(Health.UNHEALTHY, "circuit open")),
        ("analyzer", HealthReport(Health.DEGRADED, "backlog 60")),
    ]
    assert worst(reports) == HealthReport(Health.UNHEALTHY, "processor: circuit open")
    assert worst(reports[:1]) == HealthReport.healthy()


def test_abstract_notify_addresses_and_the_watchdog_period() -> None:
    assert socket_address("@sd") == "\0sd"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert watchdog_period({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert watchdog_period({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({}) is None


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    notifier.ready("HEALTHY")  # no socket, no error


def test_status_is_sent_only_when_it_changes() -> None:
    name = f"dsa110-unit-{uuid.uuid4().hex[:8]}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1)
        notifier = Notifier("@" + name)
        notifier.status("HEALTHY")
        notifier.status("HEALTHY")
        notifier.watchdog()
        assert sock.recv(100) == b"STATUS=HEALTHY"
        assert sock.recv(100) == b"WATCHDOG=1"
        notifier.close()


def test_metrics_count_jobs_and_give_duration_percentiles() -> None:
    metrics = ServiceMetrics()
    for _ in range(3):
        with metrics.job():
            pass
    with pytest.raises(ValueError), metrics.job():
        raise ValueError("bad")
    snap = metrics.snapshot()
    assert (snap["processed"], snap["failed"], snap["error_rate"]) == (3, 1, 0.25)
    assert set(snap["duration_sec"]) == {"p50", "p90", "p99"}


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
