"""Idle daemon: start to READY on the embedded server, then CPU and memory with no data;
and the first job's latency after an idle spell against a warm one.

All three services on with no data to process, the worker pool at one process per core,
production settings; the daemon runs as a subprocess with a NOTIFY_SOCKET to time READY
(as root, with DSA110_ALLOW_ROOT=1, which the daemon otherwise refuses).

**Baseline in the same run**: the same measurement of the daemon at BASELINE_REF (default
the commit this branch forked from main: ``git merge-base HEAD main``; set
``BENCH_DAEMON_BASELINE`` to another ref), its ``src`` exported with ``git archive``, run
just before ours on the same machine, so that both see the same load.

**First job**: a WorkerPool with the processor's and analyzer's worker modules, as the daemon
builds it, timing a trivial job (``os.getpid``): warm (a live worker), after an idle spell
with the watcher's hint (the pool was warmed before the job by the cold start's time plus
HINT_MARGIN_SEC, as when an ``_incomplete`` file starts being written minutes before its set
is whole), and cold (no hint: the job spawns a worker and waits for its imports).
Goals: READY < 3 s, CPU < 0.5 % of one core, PSS <= 250 MB (daemon and workers), first job
after idle within 1 s of a warm one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psutil

from bench.common import report
from dsa110d.privileges import ALLOW_ROOT_ENV

REPO = Path(__file__).resolve().parent.parent
IDLE_SEC = float(os.environ.get("BENCH_DAEMON_IDLE_SEC", "30"))
WARM_UP_SEC = 20.0
"""After READY the baseline's workers are still importing their modules (seconds, under load)."""
SETTLE_WINDOW_SEC = 5.0
SETTLE_CPU_PERCENT = 5.0
SETTLE_MAX_SEC = 120.0
HINT_MARGIN_SEC = 10.0
"""The hint's lead in the first-job figure: the cold start's time plus this (an _incomplete
file is written for ~309 s before its set is whole)."""


def _environ(workdir: Path, notify: str, src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env.update(
        {
            "PYTHONPATH": str(src),
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


def _per_process(proc: psutil.Process) -> list[dict[str, Any]]:
    """Name, RSS and PSS (MB) of each process of the tree."""
    rows = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            memory = p.memory_full_info()
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if p == proc:
            kind = "daemon"
        elif "forkserver" in cmd:  # the forkserver and the workers it forked share its cmdline
            kind = "forkserver" if p.ppid() == proc.pid else "worker"
        else:
            kind = "other"
        rows.append(
            {
                "pid": p.pid,
                "kind": kind,
                "rss_mb": round(memory.rss / 2**20, 1),
                "pss_mb": round(getattr(memory, "pss", memory.rss) / 2**20, 1),
            }
        )
    return rows


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


def _settle(proc: psutil.Process) -> None:
    """Wait WARM_UP_SEC, then until the tree's CPU over SETTLE_WINDOW_SEC falls below
    SETTLE_CPU_PERCENT (the workers' imports are done), for at most SETTLE_MAX_SEC."""
    time.sleep(WARM_UP_SEC)
    deadline = time.monotonic() + SETTLE_MAX_SEC
    while time.monotonic() < deadline:
        *_, before = _tree_usage(proc)
        time.sleep(SETTLE_WINDOW_SEC)
        *_, after = _tree_usage(proc)
        if 100 * (after - before) / SETTLE_WINDOW_SEC < SETTLE_CPU_PERCENT:
            return


def _baseline_tree(ref: str, into: Path) -> Path:
    """``src`` and ``etc`` of the baseline commit, exported (no worktree, no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src", "etc"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _baseline_ref() -> str:
    ref = os.environ.get("BENCH_DAEMON_BASELINE")
    if ref:
        return ref
    return subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def measure(tree: Path) -> dict[str, Any]:
    """Start the daemon from ``tree`` (its src and etc); READY time, then idle CPU and memory
    of its process tree."""
    workdir = Path(tempfile.mkdtemp(prefix="dsa110-bench-daemon-"))
    name = f"dsa110-bench-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(60)
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
            str(tree / "etc" / "dsa110" / "services.yaml"),
            "--services",
            "all",
        ],
        env=_environ(workdir, "@" + name, tree / "src"),
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "daemon.err").open("w"),
    )
    try:
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
        except TimeoutError:
            err = (workdir / "daemon.err").read_text().strip().splitlines()
            raise SystemExit(f"bench daemon: no READY in 60 s: {err[-1:] or 'no output'}") from None
        ready_sec = time.monotonic() - started
        proc = psutil.Process(daemon.pid)
        _settle(proc)  # the baseline's workers import the science stack meanwhile
        from dsa110d.state import embedded

        server = embedded.running_server(workdir / "state")
        server_proc = psutil.Process(server.pid) if server else None
        server_cpu_before = sum(server_proc.cpu_times()[:2]) if server_proc else 0.0
        load_before = os.getloadavg()
        *_, cpu_before = _tree_usage(proc)
        t0 = time.monotonic()
        peak_rss = peak_pss = 0.0
        while time.monotonic() - t0 < IDLE_SEC:
            time.sleep(1.0)
            rss, pss, _ = _tree_usage(proc)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        *_, cpu_after = _tree_usage(proc)
        window = time.monotonic() - t0
        cpu_percent = 100 * (cpu_after - cpu_before) / window
        server_cpu = (sum(server_proc.cpu_times()[:2]) - server_cpu_before) if server_proc else 0.0
        processes = _per_process(proc)
        server_rss = server_proc.memory_info().rss if server_proc else 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        sock.close()
        from dsa110d.state import embedded as _embedded

        _embedded.stop_server(workdir / "state")
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "start_to_ready_sec": round(ready_sec, 3),
        "idle_cpu_percent_of_one_core": round(cpu_percent, 3),
        "idle_rss_mb": round(peak_rss / 2**20, 1),
        "idle_pss_mb": round(peak_pss / 2**20, 1),
        "processes_measured": len(processes),
        "processes": processes,
        "embedded_server_rss_mb": round(server_rss / 2**20, 1),
        "embedded_server_cpu_percent": round(100 * server_cpu / window, 3),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "exit_code_after_sigterm": code,
    }


async def first_job_latency() -> dict[str, Any]:
    """A trivial job's latency through the daemon's pool: warm, after idle with the hint,
    and cold (see the module docstring)."""
    from dsa110d.lifecycle import _worker_modules
    from dsa110d.services.base import load_service_modules
    from dsa110d.workers import WorkerPool

    load_service_modules()
    modules = _worker_modules(["watcher", "processor", "analyzer"])

    async def timed(pool: WorkerPool) -> float:
        began = time.perf_counter()
        await pool.run(os.getpid)
        return time.perf_counter() - began

    async with WorkerPool(1, modules, idle_sec=300) as pool:
        cold = await timed(pool)  # no hint: spawn and import with the job
        warm_runs = [await timed(pool) for _ in range(5)]
    lead = cold + HINT_MARGIN_SEC
    async with WorkerPool(1, modules, idle_sec=300) as pool:
        await pool.warm()  # the hint: files started landing
        await anyio.sleep(lead)
        hinted = await timed(pool)
    warm = sorted(warm_runs)[len(warm_runs) // 2]
    return {
        "modules": modules,
        "warm_ms": round(1000 * warm, 2),
        "after_idle_with_hint_ms": round(1000 * hinted, 2),
        "hint_lead_sec": round(lead, 1),
        "after_idle_no_hint_sec": round(cold, 2),
        "extra_after_idle_with_hint_sec": round(hinted - warm, 3),
        "goal_extra_sec": 1.0,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "note": "cold = spawn + imports of the science stack, the cost a job meets when no"
        " hint came (e.g. the first set of a restart's backlog)",
    }


def main() -> None:
    ref = _baseline_ref()
    tmp = Path(tempfile.mkdtemp(prefix="dsa110-bench-baseline-"))
    first_job = anyio.run(first_job_latency)
    print("first job:", first_job, flush=True)
    try:
        baseline = measure(_baseline_tree(ref, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("baseline:", baseline, flush=True)
    ours = measure(REPO)
    ratio_cpu = baseline["idle_cpu_percent_of_one_core"] / max(
        ours["idle_cpu_percent_of_one_core"], 1e-9
    )
    report(
        "daemon",
        {
            **{k: v for k, v in ours.items() if k != "processes"},
            "idle_window_sec": IDLE_SEC,
            "baseline_ref": ref,
            "baseline": baseline,
            "ours_processes": ours["processes"],
            "ratio_idle_cpu_baseline_over_ours": round(ratio_cpu, 2),
            "ratio_idle_pss_baseline_over_ours": round(
                baseline["idle_pss_mb"] / max(ours["idle_pss_mb"], 1e-9), 2
            ),
            "first_job": first_job,
            "goals": {
                "start_to_ready_sec": 3,
                "cpu_percent": 0.5,
                "pss_mb": 250,
                "first_job_extra_sec": 1.0,
                "met": {
                    "cpu": ours["idle_cpu_percent_of_one_core"] < 0.5,
                    "pss": ours["idle_pss_mb"] <= 250,
                    "first_job": first_job["extra_after_idle_with_hint_sec"] <= 1.0,
                },
            },
            "note": "the embedded Valkey (a separate daemonized process) is not in the tree's"
            " RSS/CPU; its own CPU is embedded_server_cpu_percent. Shared 2-core machine: see"
            " the load averages, and compare with the baseline's figures from the same run.",
        },
    )


if __name__ == "__main__":
    main()
