"""Fixtures for the daemon-as-a-process tests: environments, daemons cleaned up, a notify socket."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.daemonkit import REPO, SYSTEM_DIR, Daemon, NotifyListener


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
                "DSA110_ALLOW_ROOT": "1",  # tests and CI run as root
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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item (the chaos suite's outcome table reads it)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
