"""The watcher service asleep: with nothing landing it does not wake (its watch blocks on
inotify, the stability re-checks wait for a growing file); a set landing then is still
announced, and a file written in place is re-checked until its size settles.

Without the remedy it woke about seven times a second: watchfiles returning every 500 ms,
the stability re-check every stability_interval_sec (0.2 s) over an empty set of files."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
import structlog

from dsa110d.config import Config
from dsa110d.metrics import ServiceMetrics
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.base import ServiceContext
from dsa110d.services.watcher import HDF5WatcherService
from dsa110d.workers import WorkerPool
from tests.conftest import make_config
from tests.helpers.wakeups import COUNTING_BACKEND, settled, wakeups_during
from tests.integration.services.watcher.watcherkit import (
    FAST,
    N_SUBBANDS,
    announced,
    announced_paths,
    by_set,
    land,
)

pytestmark = pytest.mark.anyio

IDLE_WINDOW_SEC = 1.5
MAX_IDLE_WAKEUPS = 1


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return COUNTING_BACKEND


@pytest.fixture
def config(tmp_path: Path, server_url: str) -> Config:
    """Scans and open-set checks at the shipped minute, files settling in 0.2 s."""
    made = make_config(
        tmp_path,
        server_url,
        **{**FAST, "services__hdf5_watcher__stability_interval_sec": 0.2},
        services__hdf5_watcher__poll_interval_sec=60,
        services__hdf5_watcher__processing_timeout_sec=300,
    )
    made.paths.incoming_dir.mkdir(parents=True, exist_ok=True)
    return made


async def test_an_idle_watcher_sleeps_and_still_announces_what_lands(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    service = HDF5WatcherService()
    ctx = ServiceContext(
        "watcher", lambda: config, redis, WorkerPool(1), structlog.get_logger("t"), ServiceMetrics()
    )
    await service.start(ctx)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run, ctx)
            await settled()  # armed, and its rescan done
            wakeups = await wakeups_during(IDLE_WINDOW_SEC)
            assert wakeups <= MAX_IDLE_WAKEUPS, f"{wakeups} wake-ups in {IDLE_WINDOW_SEC} s"

            first = by_set(tiny_sets.files)[0]
            for path in first[:-1]:
                land(path, config.paths.incoming_dir)
            # the last subband written in place, slowly: it counts once its size settles
            data = first[-1].read_bytes()
            growing = config.paths.incoming_dir / first[-1].name
            step = len(data) // 8 + 1
            with growing.open("wb") as out:
                for i in range(0, len(data), step):
                    out.write(data[i : i + step])
                    out.flush()
                    await anyio.sleep(0.1)
            with anyio.fail_after(10):
                while not await announced(redis, config):
                    await anyio.sleep(0.05)
            ctx.stopping.set()
    finally:
        await service.stop(ctx)
    (message,) = await announced(redis, config)
    assert len(announced_paths(message)) == N_SUBBANDS
    assert str(growing.resolve()) in announced_paths(message)
    record = await service.handler.sets.get(message.payload["set_id"])  # type: ignore[union-attr]
    assert record is not None and record.errors == ()
