"""The worker pool: a worker killed mid-job fails only that job, and the pool replaces it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest

from dsa110d.errors import ConversionError, WorkerDiedError, WorkerJobError
from dsa110d.workers import WorkerPool


def slow_job(marker: str, seconds: float) -> int:
    """Write this worker's pid to ``marker``, then work for ``seconds``."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


def raises_ours(path: str) -> None:
    raise ConversionError(f"{path}: cannot convert")


def raises_other() -> None:
    raise ZeroDivisionError("boom")


pytestmark = pytest.mark.anyio


async def test_a_killed_worker_fails_only_its_job_which_then_succeeds_on_retry(
    tmp_path: Path,
) -> None:
    async with WorkerPool(size=2) as pool:
        victim, bystander = tmp_path / "victim", tmp_path / "bystander"
        results: dict[str, object] = {}

        async def run(name: str, marker: Path, seconds: float) -> None:
            try:
                results[name] = await pool.run(slow_job, str(marker), seconds)
            except WorkerDiedError as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "victim", victim, 5.0)
            tg.start_soon(run, "bystander", bystander, 1.0)
            with anyio.fail_after(10):
                while not (victim.exists() and bystander.exists()):
                    await anyio.sleep(0.02)
            os.kill(int(victim.read_text()), signal.SIGKILL)

        assert isinstance(results["victim"], WorkerDiedError)
        assert "killed by SIGKILL" in str(results["victim"])
        assert results["bystander"] == int(bystander.read_text())  # untouched
        retried = await pool.run(slow_job, str(victim), 0.0)
        assert retried in pool.pids
        assert pool.recent_deaths() == 1
        assert len(pool.pids) == 2  # replaced


async def test_results_and_errors_cross_as_json() -> None:
    async with WorkerPool(size=1) as pool:
        assert await pool.run(add, 2, b=3) == {"sum": 5}
        with pytest.raises(ConversionError, match=r"x\.hdf5: cannot convert"):
            await pool.run(raises_ours, "x.hdf5")
        with pytest.raises(WorkerJobError, match="ZeroDivisionError: boom"):
            await pool.run(raises_other)
        with pytest.raises(TypeError, match="module-level"):
            await pool.run(lambda: 1)


async def test_cancelling_a_job_kills_its_worker(tmp_path: Path) -> None:
    async with WorkerPool(size=1) as pool:
        marker = tmp_path / "m"
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, slow_job, str(marker), 30.0)
            # the pool starts its worker on demand: cancel once the job is surely running
            with anyio.fail_after(60):
                while not marker.exists() or not marker.read_text():
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        pid = int(marker.read_text())
        with anyio.fail_after(5):
            while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
                await anyio.sleep(0.05)
        assert await pool.run(add, 1, 1) == {"sum": 2}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


def imported(module: str) -> bool:
    import sys

    return module in sys.modules


async def test_workers_import_the_heavy_modules_once_at_start_up() -> None:
    async with WorkerPool(size=1) as plain:
        assert await plain.run(imported, "numpy") is False
    async with WorkerPool(size=1, modules=["numpy"]) as heavy:
        assert await heavy.run(imported, "numpy") is True


async def test_a_job_waiting_for_a_free_worker_keeps_beating(tmp_path: Path) -> None:
    """A caller queued behind a busy pool is waiting, not stuck: its heartbeat keeps going."""
    async with WorkerPool(size=1, beat_sec=0.1) as pool:
        beats: list[float] = []
        marker = tmp_path / "busy"
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run, slow_job, str(marker), 1.5)
            with anyio.fail_after(10):
                while not marker.exists():
                    await anyio.sleep(0.02)
            waited_from = time.monotonic()
            await pool.run(add, 1, 2, on_wait=lambda: beats.append(time.monotonic()))
        # Beats while queued (before the busy job ends ~1.5 s in), not only once running.
        assert len([t for t in beats if t - waited_from < 1.0]) >= 3


def pid() -> int:
    return os.getpid()


async def _gone(process_id: int, within_sec: float) -> bool:
    with anyio.move_on_after(within_sec):
        while True:
            try:
                os.kill(process_id, 0)
            except ProcessLookupError:
                return True
            await anyio.sleep(0.05)
    return False


async def test_a_pool_that_shrinks_when_idle_starts_none_and_its_workers_retire() -> None:
    """Idle memory: no worker until work comes; an idle worker exits by itself (its own
    deadline, no timer in the daemon) and is not counted as a death; the next job gets a
    fresh one."""
    async with WorkerPool(size=1, modules=["json"], idle_sec=0.3) as pool:
        pool.retire_grace_sec = 0.3
        assert pool.pids == []
        first = await pool.run(pid)
        assert await _gone(first, within_sec=5.0), "the idle worker did not exit by itself"
        second = await pool.run(pid)
        assert second != first
        assert pool.retired == 1 and pool.recent_deaths() == 0


async def test_warming_spawns_ahead_of_the_job_and_keeps_an_idle_worker_alive() -> None:
    async with WorkerPool(size=1, modules=["json"], idle_sec=1.0) as pool:
        pool.retire_grace_sec = 0.2
        await pool.warm()
        (warmed,) = pool.pids
        for _ in range(4):  # 2 s in all, twice idle_sec: each warm restarts the idle clock
            await anyio.sleep(0.5)
            await pool.warm()
        assert await pool.run(pid) == warmed
        assert pool.retired == 0
