"""``dsa110d demo`` as a user runs it: the quick demo ends with the report and the verdict, and
Ctrl-C stops it cleanly (daemon and server gone, scratch directory removed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dsa110d.demo_report import parse_verdict
from dsa110d.state import embedded
from tests.system.daemonkit import REPO, wait_for


def _demo(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.Popen(
        [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", "demo", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _no_children_left(pid: int) -> None:
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == pid]


@pytest.mark.timeout(900)
def test_quick_demo_reports_the_verdict_against_the_truth(tmp_path: Path) -> None:
    demo = _demo("--quick", "--workdir", str(tmp_path / "demo"))
    out, _ = demo.communicate(timeout=880)
    assert demo.returncode == 0, out[-3000:]
    text = " ".join(out.split())  # rich wraps long lines
    assert "pipeline finished in" in text
    assert "variability report" in text
    verdict = parse_verdict(out)
    assert verdict is not None, text[-2000:]
    assert verdict.perfect, f"{verdict}: {text[-2000:]}"
    plots = sorted((tmp_path / "demo" / "results" / "variability").glob("*/eta_v.png"))
    assert plots and str(plots[-1]) in out.replace("\n", "")
    assert embedded.running_server(tmp_path / "demo" / "state") is None


@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_demo_and_removes_its_scratch_directory() -> None:
    demo = _demo("--quick")
    assert demo.stdout is not None
    first = demo.stdout.readline()
    match = re.search(r"demo in (\S+)", first)
    assert match, first
    scratch = Path(match.group(1))
    wait_for(lambda: '"event": "ready"' in _read(scratch / "demo.log"), timeout=120, step=0.2)
    demo.send_signal(signal.SIGINT)
    demo.communicate(timeout=90)
    assert demo.returncode == 130
    assert not scratch.exists()
    _no_children_left(demo.pid)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
