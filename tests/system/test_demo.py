"""``dsa110d demo`` as a user runs it: the quick demo ends with the report and the verdict, and
Ctrl-C stops it cleanly (daemon and server gone, scratch directory removed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psutil
import pytest

from dsa110d.demo_report import parse_verdict
from dsa110d.state import embedded
from tests.system.daemonkit import REPO, wait_for


def _demo(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.Popen(
        [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", "demo", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
    )  # fmt: skip


def _no_children_left(pid: int) -> None:
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == pid]


@pytest.mark.timeout(900)
def test_quick_demo_as_a_new_user_runs_it(tmp_path: Path) -> None:
    """No options, in a directory of one's own: the console answers while it runs, the report
    and verdict come at the end, and the plots it lists are still there afterwards."""
    demo = _demo("--quick", cwd=tmp_path)
    assert demo.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    wait_for(lambda: "web console:" in "".join(lines), timeout=120, step=0.2)
    url = re.search(r"web console: (http://\S+/)", "".join(lines))
    assert url, "".join(lines)
    wait_for(lambda: _answers(url.group(1) + "api/v1/status"), timeout=180, step=0.5)
    assert demo.wait(timeout=880) == 0, "".join(lines)[-3000:]
    reader.join(timeout=10)
    demo.stdout.close()
    out = "".join(lines)
    text = " ".join(out.split())  # rich wraps long lines
    assert "pipeline finished in" in text
    assert "variability report" in text
    verdict = parse_verdict(out)
    assert verdict is not None, text[-2000:]
    assert verdict.perfect, f"{verdict}: {text[-2000:]}"
    kept = list((tmp_path / "demo-results").iterdir())
    assert len(kept) == 1 and "results and plots kept in" in text
    assert str(kept[0]) in out.replace("\n", "")  # rich may wrap the path anywhere
    plots = sorted((kept[0] / "variability").glob("*/eta_v.png"))
    assert plots and str(plots[-1]) in out.replace("\n", "")
    scratch = re.search(r"demo in (\S+)", out)
    assert scratch and not Path(scratch.group(1)).exists()
    assert embedded.running_server(Path(scratch.group(1)) / "state") is None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_demo_and_removes_its_scratch_directory(tmp_path: Path) -> None:
    demo = _demo("--quick", cwd=tmp_path)
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
    assert list(tmp_path.iterdir()) == []  # no results yet: nothing left behind
    _no_children_left(demo.pid)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
