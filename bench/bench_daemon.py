"""Idle daemon: start to READY on the embedded server, then CPU and RSS with no data.

All three services on with no data to process, the worker pool at one process per core,
production settings; the daemon runs as a subprocess with a NOTIFY_SOCKET to time READY
(as root, with DSA110_ALLOW_ROOT=1, which the daemon otherwise refuses).
Goals: READY < 3 s, CPU < 1 % of one core, RSS < 250 MB (daemon and workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from bench.common import report
from dsa110d.privileges import ALLOW_ROOT_ENV

REPO = Path(__file__).resolve().parent.parent
IDLE_SEC = 30.0
WARM_UP_SEC = 10.0
"""After READY the workers are still importing their modules for a few seconds."""


def _environ(workdir: Path, notify: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "NOTIFY_SOCKET": notify,
            "DSA110__REDIS__EMBEDDED": "true",
            "DSA110__SUPERVISOR__WORKERS": "0",
        }
    )
    if os.geteuid() == 0:
        env[ALLOW_ROOT_ENV] = "1"
    for name in ("incoming", "ms", "results", "processed", "state", "log"):
        env[f"DSA110__PATHS__{name.upper()}_DIR"] = str(workdir / name)
    return env


def _tree_usage(proc: psutil.Process) -> tuple[float, float, float]:
    """(RSS bytes, PSS bytes, CPU seconds) of a process and its children.

    RSS counts the pages forked workers share with each other once per process; PSS splits
    them among the sharers, so it is what the tree really holds.
    """
    rss, pss, cpu = 0.0, 0.0, 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            memory = p.memory_full_info()
            rss += memory.rss
            pss += getattr(memory, "pss", memory.rss)
            cpu += times.user + times.system
        except psutil.Error:
            continue
    return rss, pss, cpu


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dsa110-bench-daemon-"))
    name = f"dsa110-bench-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(30)
    started = time.monotonic()
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from dsa110d.cli.daemon import main; main()",
            "run",
            "--env",
            "production",
            "--config",
            str(REPO / "etc" / "dsa110" / "services.yaml"),
            "--services",
            "all",
        ],
        env=_environ(workdir, "@" + name),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "daemon.err").open("w"),
    )
    try:
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
        except TimeoutError:
            err = (workdir / "daemon.err").read_text().strip().splitlines()
            raise SystemExit(f"bench daemon: no READY in 30 s: {err[-1:] or 'no output'}") from None
        ready_sec = time.monotonic() - started
        proc = psutil.Process(daemon.pid)
        time.sleep(WARM_UP_SEC)  # the workers import the science stack (pyuvdata, casacore...)
        *_, cpu_before = _tree_usage(proc)
        t0 = time.monotonic()
        peak_rss = peak_pss = 0.0
        while time.monotonic() - t0 < IDLE_SEC:
            time.sleep(1.0)
            rss, pss, _ = _tree_usage(proc)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        *_, cpu_after = _tree_usage(proc)
        cpu_percent = 100 * (cpu_after - cpu_before) / (time.monotonic() - t0)
        processes = 1 + len(proc.children(recursive=True))
        from dsa110d.state import embedded

        server = embedded.running_server(workdir / "state")
        server_rss = psutil.Process(server.pid).memory_info().rss if server else 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
        sock.close()
        from dsa110d.state import embedded as _embedded

        _embedded.stop_server(workdir / "state")
    report(
        "daemon",
        {
            "start_to_ready_sec": round(ready_sec, 3),
            "idle_cpu_percent_of_one_core": round(cpu_percent, 3),
            "idle_rss_mb": round(peak_rss / 2**20, 1),
            "idle_pss_mb": round(peak_pss / 2**20, 1),
            "processes_measured": processes,
            "embedded_server_rss_mb": round(server_rss / 2**20, 1),
            "idle_window_sec": IDLE_SEC,
            "exit_code_after_sigterm": code,
            "goals": {"start_to_ready_sec": 3, "cpu_percent": 1, "rss_mb": 250},
            "note": "the embedded Valkey (a separate daemonized process) is not included in"
            " RSS/CPU",
        },
    )


if __name__ == "__main__":
    main()
