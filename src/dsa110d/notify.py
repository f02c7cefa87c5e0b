"""systemd's notify protocol without depending on systemd: datagrams to ``$NOTIFY_SOCKET``.

READY=1, STATUS=..., WATCHDOG=1, RELOADING=1 and STOPPING=1 (sd_notify(3)). When
``NOTIFY_SOCKET`` is unset every call does nothing; an abstract socket is written ``@name``.
A send that fails is logged once and otherwise ignored: the daemon never dies for systemd.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from dsa110d.logs import get_logger

log = get_logger("dsa110d.notify")


def socket_address(value: str) -> str:
    """The address to send to: ``@name`` is the abstract socket ``\\0name``."""
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_period(environ: Mapping[str, str] = os.environ) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is for this process."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """Sends sd_notify datagrams; a no-op when there is no NOTIFY_SOCKET."""

    def __init__(self, address: str | None) -> None:
        self.address = socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_status = ""
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        """One datagram of newline-separated ``KEY=value`` fields."""
        if self._sock is None or self.address is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("notify_failed", socket=self.address, error=str(exc))
                self._failed = True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")
        self._last_status = status

    def status(self, status: str) -> None:
        """STATUS=, sent only when the line changed (systemd shows the latest)."""
        if status != self._last_status:
            self.send(f"STATUS={status}")
            self._last_status = status

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")
        self._last_status = status

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
