"""Services started by the seed's names: ``service_manager`` alone and ``hdf5_watcher`` as
real background daemons on the session's server, each logging to ``<log_dir>/<seed>.log``."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa110d.config import load_config
from dsa110d.operations.background import ProcessBackend, is_daemon
from dsa110d.operations.status import service_status
from dsa110d.state import embedded

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]
SERVICES_YAML = REPO / "etc" / "dsa110" / "services.yaml"


@pytest.fixture
def backend(
    tmp_path: Path, embedded_server: embedded.EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProcessBackend]:
    """A process backend in the testing environment, every path under tmp_path."""
    for key in list(os.environ):
        if key.startswith("DSA110"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    monkeypatch.setenv("DSA110__REDIS__EMBEDDED", "false")
    monkeypatch.setenv("DSA110__REDIS__URL", embedded_server.url)
    monkeypatch.setenv("DSA110__REDIS__NAMESPACE", f"s-{tmp_path.name[-12:]}")
    monkeypatch.setenv("DSA110__SUPERVISOR__WORKERS", "1")
    monkeypatch.setenv("DSA110_ALLOW_ROOT", "1")  # tests and CI run as root
    for key in ("incoming", "ms", "results", "processed", "state", "log"):
        monkeypatch.setenv(f"DSA110__PATHS__{key.upper()}_DIR", str(tmp_path / key))
    yield ProcessBackend(load_config(SERVICES_YAML, "testing"), SERVICES_YAML)
    for path in (tmp_path / "state" / "run").glob("*.pid"):
        pid = int(path.read_text())
        if is_daemon(pid):
            os.kill(pid, signal.SIGKILL)


def _events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def test_service_manager_runs_the_manager_alone(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    started = await backend.start("service_manager")
    assert started.ok, started.detail
    log = tmp_path / "log" / "service_manager.log"
    assert backend.log_file("service_manager") == log
    assert await service_status(backend.config, wait_sec=0.2) == []  # no pipeline service
    (stopped,) = await backend.stop("service_manager")
    assert stopped.ok, stopped.detail
    starting = [e for e in _events(log) if e.get("event") == "starting"]
    assert starting and starting[0]["services"] == []


async def test_hdf5_watcher_is_the_watcher_logging_to_its_seed_name(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    started = await backend.start("hdf5_watcher")
    assert started.ok, started.detail
    rows = await service_status(backend.config, wait_sec=0.2)
    assert [(r.pid, r.service) for r in rows] == [(started.pid, "watcher")]
    assert (tmp_path / "log" / "hdf5_watcher.log").exists()
    refused = await backend.start("watcher")  # the same instance by its other name
    assert not refused.ok
    (stopped,) = await backend.stop("watcher")
    assert stopped.ok and stopped.service == "hdf5_watcher"
