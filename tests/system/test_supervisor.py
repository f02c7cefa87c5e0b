"""The daemon as a real process: supervision, restart intensity, systemd notify, watchdog,
signals (graceful shutdown, SIGHUP reload) and control commands."""

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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES_YAML = REPO / "etc" / "dsa110" / "services.yaml"
SYSTEM_DIR = Path(__file__).resolve().parent


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

    def __init__(self, env: dict[str, str], services: str, config: Path = SERVICES_YAML):
        self.proc = subprocess.Popen(
            [
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
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

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


@pytest.fixture
def daemon_env(tmp_path: Path, embedded_server: object) -> Iterator[Callable[..., dict[str, str]]]:
    url = embedded_server.url  # type: ignore[attr-defined]
    namespace = f"t-{uuid.uuid4().hex[:12]}"

    def make(**overrides: object) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DSA110", "NOTIFY_", "WATCHDOG_"))
        }
        env.update(
            {
                "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{SYSTEM_DIR}",
                "DSA110_SERVICE_MODULES": "daemon_services",
                "DSA110_TEST_DIR": str(tmp_path),
                "DSA110__REDIS__EMBEDDED": "false",
                "DSA110__REDIS__URL": url,
                "DSA110__REDIS__NAMESPACE": namespace,
                "DSA110__PATHS__STATE_DIR": str(tmp_path / "state"),
                "DSA110__PATHS__LOG_DIR": str(tmp_path / "logs"),
                "DSA110__SUPERVISOR__WORKERS": "1",
            }
        )
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    yield make


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    listener = NotifyListener()
    yield listener
    listener.close()


# --------------------------------------------------------------------------- tests


def test_a_crashing_service_is_restarted_while_its_sibling_keeps_running(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    env = daemon_env(DSA110__SUPERVISOR__MAX_RESTARTS=100)
    daemons.append(daemon := Daemon(env, "steady,crashy"))
    wait_for(lambda: len(lines_of(tmp_path / "crashy.starts")) >= 4, timeout=15)
    ticks_then = len(lines_of(tmp_path / "steady.ticks"))
    wait_for(lambda: len(lines_of(tmp_path / "crashy.starts")) >= 6, timeout=15)
    assert len(lines_of(tmp_path / "steady.ticks")) > ticks_then  # the sibling kept working
    assert daemon.proc.poll() is None
    assert daemon.events("service_crashed")
    assert daemon.stop() == 0


def test_exceeding_the_restart_intensity_exits_non_zero_and_says_why(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    env = daemon_env(
        DSA110__SUPERVISOR__MAX_RESTARTS=2,
        DSA110__SUPERVISOR__WINDOW_SEC=60,
        DSA110_TEST_CRASH_AFTER=0.05,
    )
    daemons.append(daemon := Daemon(env, "steady,crashy"))
    assert daemon.wait() == 1
    assert len(lines_of(tmp_path / "crashy.starts")) == 3  # the first run and two restarts
    reason = str(daemon.events("giving_up")[-1]["reason"])
    assert "restart intensity exceeded" in reason and "crashy" in reason


def test_ready_status_watchdog_and_stopping_arrive_in_order(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(NOTIFY_SOCKET=notify.name, WATCHDOG_USEC=400_000, DSA110_TEST_START_SEC=1.0)
    daemons.append(daemon := Daemon(env, "steady,slowstart"))
    wait_for(lambda: len(notify.times_of("WATCHDOG=1")) >= 3)
    ready_at = notify.times_of("READY=1")
    assert len(ready_at) == 1
    started = float(lines_of(tmp_path / "slowstart.started")[0])
    assert time.time() - started > 0  # the file exists: start-up finished...
    fields = notify.fields()
    assert fields.index("READY=1") < fields.index("WATCHDOG=1")  # ...and READY came after it
    assert any(f.startswith("STATUS=HEALTHY") for f in fields)
    assert daemon.stop() == 0
    fields = notify.fields()
    assert "STOPPING=1" in fields
    assert "WATCHDOG=1" not in fields[fields.index("STOPPING=1") :]
    assert fields[fields.index("STOPPING=1") + 1].startswith("STATUS=STOPPING")


def test_ready_waits_for_every_service_start_up(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(NOTIFY_SOCKET=notify.name, DSA110_TEST_START_SEC=1.5)
    daemons.append(daemon := Daemon(env, "slowstart"))
    wait_for(lambda: bool(notify.times_of("READY=1")))
    assert (tmp_path / "slowstart.started").exists()
    assert daemon.stop() == 0


@pytest.mark.parametrize("service", ["stuck", "blocker"])
def test_a_stuck_service_or_a_blocked_loop_stops_the_watchdog_pings(
    service: str,
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    env = daemon_env(
        NOTIFY_SOCKET=notify.name,
        WATCHDOG_USEC=200_000,
        DSA110__SUPERVISOR__REGISTRY_TTL_SEC=1,
        DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=0.5,
        DSA110_TEST_STUCK_AFTER=1.0,
        DSA110_TEST_BLOCK_SEC=3,
    )
    daemons.append(daemon := Daemon(env, f"steady,{service}"))
    marker = tmp_path / f"{service}.now"
    wait_for(marker.exists)
    went_bad = time.monotonic()
    time.sleep(2.5)
    pings = notify.times_of("WATCHDOG=1")
    assert [t for t in pings if t < went_bad]  # pinging while healthy
    late = [t for t in pings if went_bad + 1.3 < t < went_bad + 2.5]
    assert late == []  # no pings while stuck (ttl 1 s plus one ping period of slack)
    daemon.kill()


def test_sigterm_lets_in_flight_work_finish_within_the_grace(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "j2.json").write_text('{"block": 2}')
    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=10, DSA110_TEST_JOB_SEC=1.0)
    daemons.append(daemon := Daemon(env, "jobs"))
    wait_for((tmp_path / "job.j2.began").exists)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not (tmp_path / "queue" / "j2.json").exists()
    assert (tmp_path / "out" / "j2" / "part2").read_text() == '{"block": 2}'
    assert not daemon.events("abandoning_work")


def test_sighup_reloads_a_valid_file_and_keeps_the_old_settings_for_an_invalid_one(
    daemon_env: Callable[..., dict[str, str]],
    daemons: list[Daemon],
    notify: NotifyListener,
    tmp_path: Path,
) -> None:
    config = tmp_path / "services.yaml"
    text = SERVICES_YAML.read_text()
    config.write_text(text)
    daemons.append(daemon := Daemon(daemon_env(NOTIFY_SOCKET=notify.name), "steady", config))
    wait_for(lambda: bool(notify.times_of("READY=1")))
    config.write_text(text.replace("backlog_degraded: 50", "backlog_degraded: 77"))
    daemon.signal(signal.SIGHUP)
    changed = daemon.wait_event("reloaded")["changed"]
    assert changed == {"supervisor.backlog_degraded": {"old": 50, "new": 77}}
    assert "RELOADING=1" in notify.fields()
    assert len(notify.times_of("READY=1")) == 2

    config.write_text(text.replace("backlog_degraded: 50", "backlog_degraded: -1"))
    daemon.signal(signal.SIGHUP)
    reason = str(daemon.wait_event("reload_rejected")["reason"])
    assert "supervisor.backlog_degraded" in reason
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


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
    from dsa110d.state.control import ControlChannel, ControlCommand
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

    assert daemon.stop() == 0
    assert anyio.run(entries) == {}  # a clean stop deregisters at once


def test_sigterm_mid_stream_job_is_redelivered_and_completed_by_the_next_daemon(
    daemon_env: Callable[..., dict[str, str]], daemons: list[Daemon], tmp_path: Path
) -> None:
    import anyio

    from dsa110d.config import load_config
    from dsa110d.messages import MessageType, Producer, new_message
    from dsa110d.state.connection import connected
    from dsa110d.state.keys import Keys
    from dsa110d.state.streams import ReliableStream

    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=0.5, DSA110_TEST_JOB_SEC=30)
    config = load_config(SERVICES_YAML, "testing", env)

    def stream(redis: object) -> ReliableStream:
        return ReliableStream(
            redis,  # type: ignore[arg-type]
            Keys(config.redis.namespace),
            MessageType.MS_PROCESSING,
            "streamjobs",
            config.streams,
            config.retry,
        )

    async def publish() -> None:
        async with connected(config) as redis:
            message = new_message(MessageType.MS_PROCESSING, {"job": "b1"}, Producer.here("test"))
            await stream(redis).publish(message)

    async def pending() -> int:
        async with connected(config) as redis:
            return (await stream(redis).stats()).pending

    daemons.append(first := Daemon(env, "streamjobs"))
    first.wait_event("ready")
    anyio.run(publish)
    wait_for((tmp_path / "job.b1.began").exists)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    assert first.events("abandoning_work")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written left behind
    assert anyio.run(pending) == 1  # unacked: it will be redelivered

    env = daemon_env(DSA110__SUPERVISOR__SHUTDOWN_GRACE_SEC=5, DSA110_TEST_JOB_SEC=0.2)
    daemons.append(second := Daemon(env, "streamjobs"))
    wait_for((tmp_path / "out" / "b1").exists, timeout=15)
    assert json.loads((tmp_path / "out" / "b1" / "part2").read_text()) == {"job": "b1"}
    wait_for(lambda: anyio.run(pending) == 0)
    assert second.stop() == 0
