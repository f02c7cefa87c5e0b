"""``dsa110ctl start/stop/restart`` without systemd: real daemons as background processes with
pid files and log files, in-process through :mod:`dsa110d.operations.background` and through
the installed program in the development layout (its own embedded server under ./state)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dsa110d.config import Config, load_config
from dsa110d.operations.background import ProcessBackend, is_daemon
from dsa110d.operations.status import service_status
from dsa110d.state import embedded
from tests.system.daemonkit import REPO, SERVICES_YAML

pytestmark = pytest.mark.timeout(90)
CTL = Path(sys.executable).parent / "dsa110ctl"


@pytest.fixture
def environ(
    tmp_path: Path, embedded_server: embedded.EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The testing environment on the session's server, every path in tmp_path."""
    for key in list(os.environ):
        if key.startswith("DSA110"):
            monkeypatch.delenv(key)
    values = {
        "PYTHONPATH": str(REPO / "src"),
        "DSA110__REDIS__EMBEDDED": "false",
        "DSA110__REDIS__URL": embedded_server.url,
        "DSA110__REDIS__NAMESPACE": f"t-{tmp_path.name[-12:]}",
        "DSA110__SUPERVISOR__WORKERS": "1",
        "DSA110_ALLOW_ROOT": "1",  # tests and CI run as root
        **{
            f"DSA110__PATHS__{key.upper()}": str(tmp_path / key.removesuffix("_dir"))
            for key in (
                "incoming_dir",
                "ms_dir",
                "results_dir",
                "processed_dir",
                "state_dir",
                "log_dir",
            )
        },
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield dict(os.environ)
    for path in (tmp_path / "state" / "run").glob("*.pid"):
        pid = int(path.read_text())
        if is_daemon(pid):
            os.kill(pid, signal.SIGKILL)


def config_from_environ() -> Config:
    return load_config(SERVICES_YAML, "testing")


@pytest.mark.anyio
async def test_start_restart_stop_a_background_daemon(
    environ: dict[str, str], tmp_path: Path
) -> None:
    config = config_from_environ()
    backend = ProcessBackend(config, SERVICES_YAML)
    started = await backend.start("watcher")
    assert started.ok, started.detail
    assert backend.read_pid("watcher") == started.pid and started.pid is not None
    assert is_daemon(started.pid)
    rows = await service_status(config, wait_sec=0.2)
    assert [(r.pid, r.service, r.state) for r in rows] == [(started.pid, "watcher", "running")]
    log = backend.log_file("watcher")
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "ready" in events

    refused = await backend.start("all")
    assert not refused.ok and "watcher" in refused.detail

    restarted = await backend.restart("watcher")
    assert restarted.ok, restarted.detail
    assert restarted.pid != started.pid and not psutil.pid_exists(started.pid)

    stopped = await backend.stop(None)
    assert [(o.service, o.ok) for o in stopped] == [("hdf5_watcher", True)]  # the seed's name
    assert "SIGTERM" in stopped[0].detail
    assert not psutil.pid_exists(restarted.pid or 0)
    assert not backend.pid_file("watcher").exists()
    assert await service_status(config, wait_sec=0) == []
    assert "stopped" in log.read_text()


@pytest.mark.anyio
async def test_a_stale_pid_file_is_removed_not_signalled(environ: dict[str, str]) -> None:
    backend = ProcessBackend(config_from_environ(), SERVICES_YAML)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        backend.run_dir.mkdir(parents=True)
        backend.pid_file("processor").write_text(f"{bystander.pid}\n")
        [outcome] = await backend.stop("processor")
        assert outcome.ok and "stale" in outcome.detail
        assert bystander.poll() is None  # not ours: untouched
        assert not backend.pid_file("processor").exists()
    finally:
        bystander.kill()
        bystander.wait()


async def _failed_start(service: str) -> str:
    """Start ``service`` in the background (environment as set up): it must fail and leave no
    pid file. What the report says."""
    backend = ProcessBackend(config_from_environ(), SERVICES_YAML)
    outcome = await backend.start(service)
    assert not outcome.ok
    assert not backend.pid_file(service).exists()
    return outcome.detail


@pytest.mark.anyio
async def test_a_daemon_that_exits_at_start_is_reported(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSA110_SERVICE_MODULES", "no_such_module_xyz")
    detail = await _failed_start("analyzer")
    assert "exited with status 2" in detail
    assert "no_such_module_xyz" in detail


def test_the_program_in_the_development_layout(tmp_path: Path) -> None:
    """``dsa110ctl start testing watcher`` from a working directory: ./state, ./logs, and the
    daemon's own embedded server, stopped with the last daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["DSA110_ALLOW_ROOT"] = "1"  # tests and CI run as root
    conf = ["--config", str(SERVICES_YAML)]

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CTL), *args, *conf],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=80,
        )

    try:
        start = ctl("start", "testing", "processor", "--mode", "process")
        assert start.returncode == 0, start.stdout + start.stderr
        assert start.stdout.startswith("start ms_processor: ok pid ")
        status = ctl("status", "--env", "testing", "--json")
        assert [r["service"] for r in json.loads(status.stdout)] == ["processor"]
        assert ctl("health", "--env", "testing").returncode == 0
        stop = ctl("stop", "--env", "testing", "--mode", "process")
        assert stop.returncode == 0, stop.stderr
        assert "stop ms_processor: ok" in stop.stdout
        assert "stopped the embedded Valkey" in stop.stdout
        assert embedded.running_server(tmp_path / "state") is None
        none = ctl("health", "--env", "testing")
        assert none.returncode == 2 and "no dsa110d daemon is running" in none.stdout
        assert (tmp_path / "logs" / "ms_processor.log").exists()
    finally:
        for path in (tmp_path / "state" / "run").glob("*.pid"):
            pid = int(path.read_text())
            if is_daemon(pid):
                os.kill(pid, signal.SIGKILL)
        embedded.stop_server(tmp_path / "state")


@pytest.mark.anyio
async def test_a_daemon_that_cannot_reach_its_server_is_reported(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DSA110__REDIS__URL", f"redis://127.0.0.1:{port}/0")
    detail = await _failed_start("processor")
    assert "exited with status 3" in detail
    assert "cannot reach the state server" in detail
