"""What the whole-pipeline benchmarks share: simulated sets, daemons as subprocesses on an
embedded server, landing sets as the correlator does, and progress read through the state API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import psutil

from dsa110d.config import Config, load_config
from dsa110d.science.catalog import write_catalog
from dsa110d.science.hdf5.subbands import INCOMPLETE_SUFFIX
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from dsa110d.state import embedded
from dsa110d.state.blocks import Blocks, BlockState
from dsa110d.state.connection import connected
from dsa110d.state.keys import Keys
from dsa110d.state.sets import Sets, SetState
from tests.helpers.truth import catalog_of

REPO = Path(__file__).resolve().parent.parent
SERVICES_YAML = REPO / "etc" / "dsa110" / "services.yaml"
START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)


def simulate_sets(
    out: Path, sets: int, scale: str, subbands: int = 16
) -> tuple[SimulationResult, Path]:
    """``sets`` consecutive sets and their sky as a catalog CSV."""
    result = simulate(SimulationSpec(out=out / "sets", start=START, sets=sets, scale=scale,
                                     n_subbands=subbands, seed=3))  # fmt: skip
    truth = json.loads(Path(str(result.truth_path)).read_text())
    write_catalog(out / "catalog.csv", catalog_of(truth["sources"]))
    return result, out / "catalog.csv"


def environ(root: Path, catalog: Path, **overrides: str) -> dict[str, str]:
    """A daemon's environment: development settings, every path under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env.update(
        {
            "PYTHONPATH": str(REPO / "src"),
            "DSA110_ALLOW_ROOT": "1",
            "DSA110__REDIS__EMBEDDED": "true",
            "DSA110__PATHS__CATALOG": str(catalog),
            "DSA110__SERVICES__HDF5_WATCHER__STABILITY_INTERVAL_SEC": "0.05",
            "DSA110__SERVICES__HDF5_WATCHER__POLL_INTERVAL_SEC": "2",
            "DSA110__SERVICES__MS_PROCESSOR__POLL_INTERVAL_SEC": "1",
            # One chunk per block: every set is photometered as soon as it is converted.
            "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_DURATION_MIN": "5",
            "DSA110__SERVICES__MS_PROCESSOR__MOSAIC_OVERLAP_MIN": "0",
            "DSA110__LOGGING__FILE": "false",
        }
    )
    for name in ("incoming", "ms", "results", "processed", "state", "log"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[f"DSA110__PATHS__{name.upper()}_DIR"] = str(root / name)
    env.update(overrides)
    return env


def config_of(env: dict[str, str]) -> Config:
    return load_config(SERVICES_YAML, "development", env)


def start_daemon(env: dict[str, str], services: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from dsa110d.cli.daemon import main; main()", "run",
             "--config", str(SERVICES_YAML), "--env", "development", "--services", services,
             "--log-format", "json"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_ready(log: Path, count: int = 1, timeout: float = 120.0) -> None:
    """Until ``count`` daemons logging to ``log`` have said ``ready``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count('"event": "ready"') >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"daemons not ready within {timeout:g} s (see {log})")


def land_set(files: list[Path], incoming: Path) -> None:
    """Hard-link each file in under its ``_incomplete`` name, then rename (the correlator's
    arrival, without copying gigabytes)."""
    for f in files:
        temporary = incoming / f.name.replace(".hdf5", INCOMPLETE_SUFFIX)
        os.link(f, temporary)
        os.replace(temporary, incoming / f.name)


def set_files(sim: SimulationResult, index: int) -> list[Path]:
    prefix = sim.set_ids[index][:16]
    return sorted(f for f in sim.files if f.name.startswith(prefix))


async def _progress(config: Config) -> tuple[int, int, list[float]]:
    keys = Keys(config.redis.namespace)
    async with connected(config) as redis:
        sets = await Sets(redis, keys).list()
        blocks = await Blocks(redis, keys).blocks()
    converted = sum(s.state is SetState.CONVERTED for s in sets)
    done = [b.processed_at for b in blocks if b.state is BlockState.PROCESSED and not b.stale]
    return converted, len(done), done


def progress(config: Config) -> tuple[int, int, list[float]]:
    """(sets converted, blocks processed, their processed_at times), from Redis."""
    return anyio.run(_progress, config)


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return False


def tree_cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds of the daemons and their (live) worker processes."""
    total = 0.0
    for p in procs:
        try:
            parent = psutil.Process(p.pid)
            for proc in [parent, *parent.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def stop(procs: list[subprocess.Popen[bytes]], state_dir: Path) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    embedded.stop_server(state_dir)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def figures_header() -> dict[str, Any]:
    return {"load_average_before": load_average()}
