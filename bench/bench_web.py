"""The web console: API latency over a large recorded state, and the daemon's idle CPU with the
console open.

A ``dsa110d run --services web`` daemon (production settings, the embedded server) serves a
namespace holding ``BENCH_WEB_SOURCES`` sources (default 10^4: the variability table, 1,000
stored candidates), ``BENCH_WEB_BLOCKS`` block records (default 10^3), as many sets, and
photometry for ``BENCH_WEB_PHOT_BLOCKS`` blocks (default 100: the light curve's files).

* Latency: ``BENCH_WEB_N`` sequential GETs (default 300) of ``/api/v1/status``,
  ``/api/v1/candidates``, ``/api/v1/overview``, ``/api/v1/blocks?limit=200`` and one light
  curve, on one keep-alive connection; p50 and p99 per endpoint. Goal: p99 <= 50 ms for status
  and candidates. Baseline, same run: the same operations called as ``dsa110ctl`` calls them
  (in-process, a new connection each time, no HTTP), p99; the ratio is baseline / API.
* Idle CPU: the daemon's CPU (with its children) over ``IDLE_SEC`` with no client, then over
  ``IDLE_SEC`` with the overview page open: the request ``console.js`` makes every
  ``services.web.refresh_sec`` (the overview). Goal: no measurable change.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import psutil

from bench.common import report
from dsa110d.config import Config, load_config
from dsa110d.operations import records, status
from dsa110d.privileges import ALLOW_ROOT_ENV
from dsa110d.state import embedded
from dsa110d.state.blocks import Blocks, BlockSpan, ChunkRecord
from dsa110d.state.candidates import CandidateStore
from dsa110d.state.connection import connected
from dsa110d.state.keys import Keys
from dsa110d.state.sets import NewFile, Sets

REPO = Path(__file__).resolve().parent.parent
SOURCES = int(os.environ.get("BENCH_WEB_SOURCES", "10000"))
BLOCKS = int(os.environ.get("BENCH_WEB_BLOCKS", "1000"))
PHOT_BLOCKS = int(os.environ.get("BENCH_WEB_PHOT_BLOCKS", "100"))
N = int(os.environ.get("BENCH_WEB_N", "300"))
IDLE_SEC = float(os.environ.get("BENCH_WEB_IDLE_SEC", "30"))
WARM_UP_SEC = 5.0
STORED_CANDIDATES = 1000
GOAL_P99_MS = 50.0
T0 = 1795000000.0
HOUR = 3600.0
SET_SEC = 309.237648
OVERVIEW_FETCHES = ("/api/v1/overview",)  # everything the overview page shows, in one answer


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _environ(workdir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "DSA110__REDIS__EMBEDDED": "true",
            "DSA110__REDIS__NAMESPACE": f"bench-web-{uuid.uuid4().hex[:8]}",
            "DSA110__SERVICES__WEB__ENABLED": "true",
            "DSA110__SERVICES__WEB__PORT": str(port),
            "DSA110__SUPERVISOR__WORKERS": "1",
        }
    )
    if os.geteuid() == 0:
        env[ALLOW_ROOT_ENV] = "1"
    for name in ("incoming", "ms", "results", "processed", "state", "log"):
        env[f"DSA110__PATHS__{name.upper()}_DIR"] = str(workdir / name)
    return env


async def _record(config: Config) -> None:
    """Sets and blocks through the state layer, candidates in their store, result files."""
    keys = Keys(config.redis.namespace)
    async with connected(config) as redis:
        sets, blocks = Sets(redis, keys), Blocks(redis, keys)
        for n in range(BLOCKS):
            stamp = T0 + n * SET_SEC
            await sets.add_file(NewFile(_stamp(stamp), 0, f"/in/{n}.hdf5", stamp, None), 1)
            begin = T0 + n * HOUR
            block_id = _stamp(begin)
            chunk = ChunkRecord(block_id, block_id, begin, begin + SET_SEC, 0.6, f"/ms/{n}.ms")
            await blocks.record_chunk(chunk, [BlockSpan(block_id, begin, begin + HOUR)])
        ids = [f"J{n:05d}+3000" for n in range(SOURCES)]
        rng = np.random.default_rng(1)
        stored = min(STORED_CANDIDATES, SOURCES)
        candidates = [
            {"source_id": s, "class": "variable", "ra_deg": 1.0, "dec_deg": 30.0, "n": BLOCKS,
             "mean_flux_jy": 1.0, "v": 0.2, "eta": float(e), "p_constant": 1e-6}
            for s, e in zip(ids[:stored], rng.uniform(5, 50, stored), strict=True)
        ]  # fmt: skip
        run = {"run_time": "2026-11-18T12:00:00+00:00", "n_candidates": len(candidates)}
        await CandidateStore(redis, keys).replace(run, candidates)
    results = config.paths.results_dir
    (results / "photometry").mkdir(parents=True, exist_ok=True)
    (results / "variability").mkdir(parents=True, exist_ok=True)
    for b in range(PHOT_BLOCKS):
        pd.DataFrame(
            {"source_id": ids, "block_id": _stamp(T0 + b * HOUR), "mjd": 61000.0 + b / 24,
             "flux_jy": rng.normal(1.0, 0.01, SOURCES), "flux_err_jy": 0.01, "flags": "",
             "version": 1}
        ).to_parquet(results / "photometry" / f"{_stamp(T0 + b * HOUR)}.v1.parquet")  # fmt: skip
    pd.DataFrame(
        {"source_id": ids, "class": None, "eta": rng.uniform(0.5, 2, SOURCES),
         "v": rng.uniform(0.001, 0.02, SOURCES), "n": BLOCKS, "mean_flux_jy": 1.0}
    ).to_parquet(results / "variability" / "latest.parquet")  # fmt: skip


def _latencies(port: int, path: str, n: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seconds = []
    try:
        for _ in range(n):
            began = time.perf_counter()
            connection.request("GET", path)
            reply = connection.getresponse()
            body = reply.read()
            seconds.append(time.perf_counter() - began)
            if reply.status != 200:
                raise SystemExit(f"bench web: {path} answered {reply.status}: {body[:200]!r}")
    finally:
        connection.close()
    return seconds


def _quantiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 2),
    }


def _baseline(config: Config, n: int) -> dict[str, dict[str, float]]:
    """The same operations as dsa110ctl calls them: in-process, a connection per call."""

    async def timed(call: Any) -> list[float]:
        seconds = []
        for _ in range(n):
            began = time.perf_counter()
            await call()
            seconds.append(time.perf_counter() - began)
        return seconds

    async def run() -> dict[str, dict[str, float]]:
        return {
            "status": _quantiles(await timed(lambda: status.service_status(config, fresh=False))),
            "candidates": _quantiles(await timed(lambda: records.latest_candidates(config))),
        }

    return anyio.run(run)


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _console_open(port: int, refresh_sec: float, stop: threading.Event) -> None:
    """What the overview page does in a browser: its fetches, every refresh."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while not stop.is_set():
            for path in OVERVIEW_FETCHES:
                connection.request("GET", path)
                connection.getresponse().read()
            stop.wait(refresh_sec)
    finally:
        connection.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dsa110-bench-web-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = _environ(workdir, port)
    config = load_config(REPO / "etc" / "dsa110" / "services.yaml", "production", env)
    embedded.ensure_server(config.paths.state_dir)
    try:
        began = time.monotonic()
        anyio.run(_record, config)
        recorded_sec = time.monotonic() - began
    except BaseException:
        embedded.stop_server(config.paths.state_dir)  # the daemon's finally is not reached
        raise
    daemon = subprocess.Popen(
        [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", "run", "--env",
         "production", "--config", str(REPO / "etc" / "dsa110" / "services.yaml"),
         "--services", "web"],
        env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "daemon.err").open("w"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _latencies(port, "/api/v1/version", 1)
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    err = (workdir / "daemon.err").read_text().strip().splitlines()
                    raise SystemExit(f"bench web: the console never answered: {err[-1:]}") from None
                time.sleep(0.2)
        time.sleep(WARM_UP_SEC)
        paths = {
            "status": "/api/v1/status",
            "candidates": "/api/v1/candidates",
            "overview": "/api/v1/overview",
            "blocks": "/api/v1/blocks?limit=200",
            "light_curve": "/api/v1/sources/J00001+3000/light-curve",
        }
        api = {}
        for name, path in paths.items():
            _latencies(port, path, 3)  # warm: imports, template and script caches
            n = N if name != "light_curve" else max(10, N // 10)
            api[name] = _quantiles(_latencies(port, path, n))
        baseline = _baseline(config, N)

        proc = psutil.Process(daemon.pid)
        first = _cpu(proc)
        time.sleep(IDLE_SEC)
        idle = (_cpu(proc) - first) / IDLE_SEC
        stop = threading.Event()
        refresh = config.services.web.refresh_sec
        browser = threading.Thread(target=_console_open, args=(port, refresh, stop), daemon=True)
        first = _cpu(proc)
        browser.start()
        time.sleep(IDLE_SEC)
        stop.set()
        browser.join(timeout=30)
        with_console = (_cpu(proc) - first) / IDLE_SEC
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        embedded.stop_server(config.paths.state_dir)
    report(
        "web",
        {
            "sources": SOURCES,
            "blocks": BLOCKS,
            "stored_candidates": min(STORED_CANDIDATES, SOURCES),
            "photometry_blocks": PHOT_BLOCKS,
            "requests_per_endpoint": N,
            "record_sec": round(recorded_sec, 1),
            "api": api,
            "baseline_dsa110ctl_operations": baseline,
            "ratio_p99_baseline_over_api": {
                k: round(baseline[k]["p99_ms"] / api[k]["p99_ms"], 2) for k in baseline
            },
            "goal_p99_ms": GOAL_P99_MS,
            "goal_met": all(api[k]["p99_ms"] <= GOAL_P99_MS for k in ("status", "candidates")),
            "idle_cpu_percent": round(100 * idle, 3),
            "console_open_cpu_percent": round(100 * with_console, 3),
            "console_open_extra_cpu_percent": round(100 * (with_console - idle), 3),
            "refresh_sec": refresh,
            "note": "console open = the overview page's fetches every refresh_sec, as "
            "console.js makes them; CPU of the daemon and its worker, percent of one core",
        },
    )


if __name__ == "__main__":
    main()
