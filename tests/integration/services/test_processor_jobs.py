"""The processor's worker jobs: a job cancelled by its timeout takes the processes it forked
down with its worker (no orphan converter keeps writing)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import psutil
import pytest

from dsa110d.workers import WorkerPool
from tests.integration.services.processorkit import fork_and_wait
from tests.system.daemonkit import wait_for

pytestmark = pytest.mark.anyio


async def test_a_cancelled_jobs_forked_children_die_with_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    async with WorkerPool(1) as pool:
        with anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, fork_and_wait, str(pid_file))
                while not pid_file.exists() or not pid_file.read_text():
                    await anyio.sleep(0.05)
                child = int(pid_file.read_text())
                assert psutil.pid_exists(child)
                tg.cancel_scope.cancel()  # as processing_timeout_sec does: the worker is killed

    def gone() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await anyio.to_thread.run_sync(lambda: wait_for(gone, timeout=10))
    assert child != os.getpid()
