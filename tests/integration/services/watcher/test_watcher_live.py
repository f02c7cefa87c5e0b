"""The watcher against the simulator in live mode: ``_incomplete`` files renamed when done,
subbands landing apart, sets one after another, seen through inotify."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.science.simulation.simulate import SimulationSpec, simulate
from dsa110d.services.watcher import HDF5EventHandler
from tests.integration.services.watcher.watcherkit import (
    N_SUBBANDS,
    START,
    announced,
    announced_paths,
)

pytestmark = pytest.mark.anyio


async def test_live_simulated_sets_are_each_announced_once_when_whole(
    config: Config, redis: aioredis.Redis
) -> None:
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    spec = SimulationSpec(
        out=config.paths.incoming_dir,
        start=START,
        sets=3,
        scale="tiny",
        n_subbands=N_SUBBANDS,
        seed=5,
        live=True,
        speed=309.0 / 0.4,  # a set every 0.4 s, subbands landing ~15 ms apart
    )
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(handler.watch, stop)
        result = await anyio.to_thread.run_sync(simulate, spec)
        with anyio.fail_after(10):
            while len(await announced(redis, config)) < len(result.set_ids):
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        stop.set()
        tg.cancel_scope.cancel()
    messages = await announced(redis, config)
    assert [m.payload["set_id"] for m in messages] == result.set_ids
    for m in messages:
        assert len(announced_paths(m)) == N_SUBBANDS
        assert not any("_incomplete" in p for p in announced_paths(m))
    assert all(r.errors == () for r in await handler.sets.list())
