"""examples/service_examples.py runs: all of it, and one example at a time with asyncio.run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.system.daemonkit import EXAMPLES, clean_environ

pytestmark = pytest.mark.timeout(300)


def test_all_examples_run() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "service_examples.py")],
        capture_output=True,
        text=True,
        timeout=280,
        env=clean_environ(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("hdf5_watcher", "ms_processor", "variability_analyzer", "service_manager"):
        assert f"== example_{name}" in done.stdout
    assert "processor  paused   DEGRADED  paused by an operator" in done.stdout
    assert "chunk 2026-03-20T06:00:00: 309 s in " in done.stdout
    assert "set 2026-03-20T06:00:00: queued, 4/4 subbands" in done.stdout
    assert "1. NEW1  transient" in done.stdout and "2. VAR1  variable" in done.stdout


def test_one_example_with_asyncio_run() -> None:
    program = (
        "import asyncio, json\n"
        "from service_examples import example_ms_processor\n"
        "seen = asyncio.run(example_ms_processor())\n"
        "print(json.dumps({'sets': [(s.set_id, s.state) for s in seen['sets']],"
        " 'chunks': [c.path.rsplit('/', 1)[1] for c in seen['chunks']]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=150,
        env=clean_environ(),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "sets": [["2026-03-20T06:00:00", "converted"]],
        "chunks": ["2026-03-20T06:00:00.ms"],
    }
