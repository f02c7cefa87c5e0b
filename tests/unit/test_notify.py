"""sd_notify addresses, the watchdog period, and datagrams on a real socket."""

from __future__ import annotations

import socket
import uuid

from dsa110d.notify import Notifier, socket_address, watchdog_period


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
