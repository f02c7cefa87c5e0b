"""examples/service_examples.py runs (all, and one at a time with asyncio.run), and the
scripts/*_services.sh wrappers drive dsa110ctl with the older interface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsa110d.operations.processes import is_daemon
from dsa110d.state import embedded
from tests.system.daemonkit import REPO, SERVICES_YAML

pytestmark = pytest.mark.timeout(120)
EXAMPLES = REPO / "examples"


def clean_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["PYTHONPATH"] = f"{REPO / 'src'}{os.pathsep}{EXAMPLES}"
    env.update(extra)
    return env


def test_all_examples_run() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "service_examples.py")],
        capture_output=True,
        text=True,
        timeout=100,
        env=clean_environ(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("hdf5_watcher", "ms_processor", "variability_analyzer", "service_manager"):
        assert f"== example_{name}" in done.stdout
    assert "processor  paused   DEGRADED  paused by an operator" in done.stdout
    assert "HDF5_PROCESSING: length 1, undelivered 1" in done.stdout
    assert "set 2026-03-20T06:00:00: queued, 4/4 subbands" in done.stdout


def test_one_example_with_asyncio_run() -> None:
    program = (
        "import asyncio, json\n"
        "from service_examples import example_ms_processor\n"
        "seen = asyncio.run(example_ms_processor())\n"
        "print(json.dumps({'length': seen['queue'].length, 'dup': seen['duplicate_published'],"
        " 'health': [r.health for r in seen['status']]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environ(),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "length": 1,
        "dup": False,
        "health": ["HEALTHY"],
    }


def script(tmp_path: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    environ = clean_environ(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        DSA110_CONFIG=str(SERVICES_YAML),
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
        assert "start analyzer: ok" in start.stdout
        status = script(tmp_path, "status_services.sh", "analyzer", DSA110_ENV="testing")
        assert status.returncode == 0 and "analyzer" in status.stdout and "HEALTHY" in status.stdout
        stop = script(tmp_path, "stop_services.sh", DSA110_ENV="testing")
        assert stop.returncode == 0, stop.stderr
        assert "stop analyzer: ok" in stop.stdout
        assert not (tmp_path / "state" / "run" / "analyzer.pid").exists()
    finally:
        for path in (tmp_path / "state" / "run").glob("*.pid"):
            pid = int(path.read_text())
            if is_daemon(pid):
                os.kill(pid, 9)
        embedded.stop_server(tmp_path / "state")
