"""The watcher through a state server outage: files that land while the server is away are
announced soon after it returns, and the outage never crashes the service.

Two faults made the chaos suite's 30 s outage fail with the inotify watch: the watch's task
group wrapped the server's error in an ExceptionGroup, which slipped past the service's
``except DSA110Error``, so each batch during the outage crashed the service (its restart
failed too, the server being away) until the restart intensity stopped the daemon; and a batch
whose handling failed was not handled again until the periodic scan, a minute later in
production (``poll_interval_sec``; 60 here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
import redis.asyncio as aioredis
import structlog

from dsa110d.config import Config
from dsa110d.errors import StateError
from dsa110d.metrics import ServiceMetrics
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.base import ServiceContext
from dsa110d.services.watcher import HDF5EventHandler, HDF5WatcherService
from dsa110d.state import embedded
from dsa110d.state.connection import connect
from dsa110d.workers import WorkerPool
from tests.conftest import make_config
from tests.integration.services.watcher.watcherkit import (
    FAST,
    N_SUBBANDS,
    announced,
    announced_paths,
    by_set,
    land_all,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

POLL_SEC = 60
"""The shipped reconciliation period: the periodic scan cannot be what finds the files."""
BACK_WITHIN_SEC = 10.0
"""How soon after the server returns the set must be announced (well under POLL_SEC)."""


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return tmp_path / "own-server"


@pytest.fixture
def own_config(tmp_path: Path, server_dir: Path) -> Config:
    server = embedded.ensure_server(server_dir)
    made = make_config(
        tmp_path,
        server.url,
        **FAST,
        services__hdf5_watcher__poll_interval_sec=POLL_SEC,
        services__hdf5_watcher__processing_timeout_sec=300,
    )
    made.paths.incoming_dir.mkdir(parents=True, exist_ok=True)
    return made


@pytest.fixture
async def client(own_config: Config, server_dir: Path) -> AsyncIterator[aioredis.Redis]:
    redis = await connect(own_config)
    try:
        yield redis
    finally:
        await redis.aclose()
        embedded.stop_server(server_dir)


async def test_a_batch_failing_on_the_server_raises_our_error_not_a_group(
    own_config: Config, client: aioredis.Redis, server_dir: Path, tiny_sets: SimulationResult
) -> None:
    handler = HDF5EventHandler(own_config, client)
    await handler.start()
    await anyio.to_thread.run_sync(embedded.stop_server, server_dir)
    landed = False

    async def on_batch() -> bool:  # the watch is armed: a set lands
        nonlocal landed
        if not landed:
            landed = True
            land_all(by_set(tiny_sets.files)[0], own_config.paths.incoming_dir)
        return True

    with pytest.raises(StateError), anyio.fail_after(30):  # as itself, not in a group
        await handler.watch(anyio.Event(), on_batch)


async def test_files_landed_during_an_outage_are_announced_once_the_server_returns(
    own_config: Config, client: aioredis.Redis, server_dir: Path, tiny_sets: SimulationResult
) -> None:
    service = HDF5WatcherService()
    ctx = ServiceContext(
        "watcher", lambda: own_config, client, WorkerPool(1), structlog.get_logger("t"),
        ServiceMetrics(),
    )  # fmt: skip
    await service.start(ctx)
    first = by_set(tiny_sets.files)[0]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run, ctx)  # a crash of the service fails the test here
            await anyio.sleep(0.5)  # armed, its first rescan done
            await anyio.to_thread.run_sync(embedded.stop_server, server_dir)
            land_all(first, own_config.paths.incoming_dir)
            with anyio.fail_after(10):  # the batch met the outage
                while not service.fault:
                    await anyio.sleep(0.05)
            await anyio.sleep(1.0)  # the outage lasts: retries keep failing, nothing crashes
            await anyio.to_thread.run_sync(embedded.ensure_server, server_dir)
            with anyio.fail_after(BACK_WITHIN_SEC):
                while not await _announced_or_none(client, own_config):
                    await anyio.sleep(0.1)
            ctx.stopping.set()
    finally:
        await service.stop(ctx)
    (message,) = await announced(client, own_config)
    assert len(announced_paths(message)) == N_SUBBANDS
    assert service.fault == ""


async def _announced_or_none(client: aioredis.Redis, config: Config) -> bool:
    try:
        return bool(await announced(client, config))
    except (OSError, aioredis.ConnectionError):
        return False  # the client reconnecting
