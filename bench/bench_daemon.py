"""Idle daemon: start to READY on the embedded server, then CPU and RSS with no data.

All three services on (today: placeholders), the worker pool at one process per core,
production settings; the daemon runs as a subprocess with a NOTIFY_SOCKET to time READY.
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

REPO = Path(__file__).resolve().parent.parent
IDLE_SEC = 30.0


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
    for name in ("incoming", "ms", "results", "processed", "state", "log"):
        env[f"DSA110__PATHS__{name.upper()}_DIR"] = str(workdir / name)
    return env


def _tree_usage(proc: psutil.Process) -> tuple[float, float]:
    """(RSS bytes, CPU seconds) of a process and its children."""
    rss, cpu = 0.0, 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            rss += p.memory_info().rss
            cpu += times.user + times.system
        except psutil.Error:
            continue
    return rss, cpu


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
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready_sec = time.monotonic() - started
        proc = psutil.Process(daemon.pid)
        time.sleep(2.0)  # let the workers finish their imports
        _, cpu_before = _tree_usage(proc)
        t0 = time.monotonic()
        peak_rss = 0.0
        while time.monotonic() - t0 < IDLE_SEC:
            time.sleep(1.0)
            peak_rss = max(peak_rss, _tree_usage(proc)[0])
        _, cpu_after = _tree_usage(proc)
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
            "processes_measured": processes,
            "embedded_server_rss_mb": round(server_rss / 2**20, 1),
            "idle_window_sec": IDLE_SEC,
            "exit_code_after_sigterm": code,
            "goals": {"start_to_ready_sec": 3, "cpu_percent": 1, "rss_mb": 250},
            "note": "services are placeholders until the watcher/processor/analyzer issues land;"
            " the embedded Valkey (a separate daemonized process) is not included in RSS/CPU",
        },
    )


if __name__ == "__main__":
    main()
