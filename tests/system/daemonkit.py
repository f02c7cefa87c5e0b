"""Helpers for running ``dsa110d run`` as a subprocess in the system tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dsa110d.messages import MessageType
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import ENTRY_FIELD

REPO = Path(__file__).resolve().parents[2]
SERVICES_YAML = REPO / "etc" / "dsa110" / "services.yaml"
SYSTEM_DIR = Path(__file__).resolve().parent
EXAMPLES = REPO / "examples"


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any DSA110* setting, the checkout's sources (and
    the examples) importable, and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["PYTHONPATH"] = f"{REPO / 'src'}{os.pathsep}{EXAMPLES}"
    env.update(extra)
    return env


def payloads(client: Any, env: dict[str, str], message_type: MessageType) -> list[dict[str, Any]]:
    """The payloads on a message type's stream in the daemon's namespace, oldest first
    (``client``: a synchronous redis client with decode_responses)."""
    stream = Keys(env["DSA110__REDIS__NAMESPACE"]).stream(message_type.value)
    return [json.loads(fields[ENTRY_FIELD])["payload"] for _, fields in client.xrange(stream)]


def wait_for(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class NotifyListener:
    """A real AF_UNIX datagram socket (abstract) standing in for systemd."""

    def __init__(self) -> None:
        self.name = f"@dsa110-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for field in data.decode().splitlines():
                self.received.append((time.monotonic(), field))

    def fields(self) -> list[str]:
        return [f for _, f in self.received]

    def times_of(self, field: str) -> list[float]:
        return [t for t, f in self.received if f == field]

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class Daemon:
    """``dsa110d run`` as a subprocess; stdout (JSON log lines) collected in a thread."""

    def __init__(
        self,
        env: dict[str, str],
        services: str,
        config: Path = SERVICES_YAML,
        prefix: Sequence[str] = (),
    ):
        """``prefix``: a command the daemon runs under (``setpriv`` to drop privileges)."""
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-c",
                "from dsa110d.cli.daemon import main; main()",
                "run",
                "--env",
                "testing",
                "--config",
                str(config),
                "--services",
                services,
                "--log-format",
                "json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
        except (ValueError, OSError):
            return  # closed under us by kill()/wait() on a slow machine: the output is done

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                found.append(record)
        return found

    def wait_event(self, name: str, timeout: float = 10.0) -> dict[str, object]:
        wait_for(lambda: bool(self.events(name)), timeout)
        return self.events(name)[-1]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        self._thread.join(timeout=2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()
