"""The scripts/*_services.sh wrappers drive dsa110ctl with the older interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsa110d.operations.background import is_daemon
from dsa110d.state import embedded
from tests.system.daemonkit import REPO, SERVICES_YAML, clean_environ

pytestmark = pytest.mark.timeout(120)


def script(tmp_path: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    environ = clean_environ(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        DSA110_CONFIG=str(SERVICES_YAML),
        DSA110_ALLOW_ROOT="1",  # tests and CI run as root
        **env,
    )
    return subprocess.run(
        [str(REPO / "scripts" / name), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=80,
        env=environ,
    )


def test_the_service_scripts_start_report_and_stop(tmp_path: Path) -> None:
    try:
        usage = script(tmp_path, "start_services.sh")
        assert usage.returncode == 2 and "usage: start_services.sh ENV [SERVICE]" in usage.stderr
        start = script(tmp_path, "start_services.sh", "testing", "analyzer")
        assert start.returncode == 0, start.stdout + start.stderr
        # processes are named as the seed named them (pid file, log file, messages)
        assert "start variability_analyzer: ok" in start.stdout
        status = script(tmp_path, "status_services.sh", "analyzer", DSA110_ENV="testing")
        assert status.returncode == 0 and "analyzer" in status.stdout and "HEALTHY" in status.stdout
        stop = script(tmp_path, "stop_services.sh", DSA110_ENV="testing")
        assert stop.returncode == 0, stop.stderr
        assert "stop variability_analyzer: ok" in stop.stdout
        assert not (tmp_path / "state" / "run" / "variability_analyzer.pid").exists()
    finally:
        for path in (tmp_path / "state" / "run").glob("*.pid"):
            pid = int(path.read_text())
            if is_daemon(pid):
                os.kill(pid, 9)
        embedded.stop_server(tmp_path / "state")
