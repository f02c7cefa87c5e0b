"""Helpers of the processor tests: whole tiny sets (16 subbands) landed and announced by the real
watcher, a processor handler on a real worker pool, and reading what it published."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from dsa110d.config import Config
from dsa110d.messages import Message, MessageType, decode
from dsa110d.science.catalog import write_catalog
from dsa110d.science.pipeline.blocks import Block, BlockPlan
from dsa110d.science.simulation.simulate import SimulationResult, SimulationSpec, simulate
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.services.processor_service import MSProcessorService
from dsa110d.services.watcher import HDF5EventHandler
from dsa110d.state.connection import Redis
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import ENTRY_FIELD
from dsa110d.state.streams import ReliableStream
from dsa110d.workers import WorkerPool
from tests.conftest import make_config
from tests.helpers.truth import catalog_of

START = datetime(2026, 3, 20, 6, 0, 0, tzinfo=UTC)
"""Start of the tiny simulation: sets at 06:00:00, 06:05:09 and 06:10:18 UTC."""
N_SETS = 3
BLOCK_SETTINGS = {
    "services__ms_processor__mosaic_duration_min": 10,
    "services__ms_processor__mosaic_overlap_min": 0,
    "services__hdf5_watcher__expected_subbands": 16,
    "services__hdf5_watcher__stability_interval_sec": 0.01,
}
"""Blocks of two 5-minute chunks, no overlap: sets 0 and 1 make block 06:00, set 2 starts
block 06:10."""
FIRST_BLOCK = "2026-03-20T06:00:00"


def simulate_sets(out: Path) -> tuple[SimulationResult, Path]:
    """Three tiny sets of all 16 subbands, and their sky as a catalog CSV."""
    result = simulate(
        SimulationSpec(out=out / "sets", start=START, sets=N_SETS, scale="tiny", seed=5)
    )
    return result, truth_catalog(result, out / "catalog.csv")


def truth_catalog(result: SimulationResult, path: Path) -> Path:
    """The simulated sky (the simulation's truth file) written as a catalog CSV at ``path``."""
    assert result.truth_path is not None
    write_catalog(path, catalog_of(json.loads(result.truth_path.read_text())["sources"]))
    return path


def set_files(sim: SimulationResult, index: int) -> list[Path]:
    """The 16 files of set ``index`` (by the set id's minute prefix)."""
    prefix = sim.set_ids[index][:16]
    return sorted(f for f in sim.files if f.name.startswith(prefix))


def first_block(config: Config) -> Block:
    """FIRST_BLOCK as the processor plans it (sets 0 and 1 are its chunks)."""
    return BlockPlan.from_config(config.services.ms_processor).block_by_id(FIRST_BLOCK)


def processor_config(tmp_path: Path, url: str, catalog: Path, **overrides: Any) -> Config:
    made = make_config(tmp_path, url, **BLOCK_SETTINGS, paths__catalog=catalog, **overrides)
    made.paths.incoming_dir.mkdir(parents=True, exist_ok=True)
    return made


async def land_and_announce(config: Config, redis: Redis, files: list[Path]) -> list[Path]:
    """Copy a set's files into incoming and let the real watcher record and announce it."""
    landed = [Path(shutil.copy2(f, config.paths.incoming_dir / f.name)) for f in files]
    watcher = HDF5EventHandler(config, redis)
    await watcher.start()
    return landed


def worker_pool(workers: int = 2) -> WorkerPool:
    """A real worker pool with the service's worker modules (use as ``async with``)."""
    return WorkerPool(workers, MSProcessorService.worker_modules)


@asynccontextmanager
async def processor(
    config: Config, redis: Redis, pool: WorkerPool
) -> AsyncIterator[MSProcessingHandler]:
    """A handler running its jobs on ``pool``."""
    handler = MSProcessingHandler(config, redis, pool.run)
    await handler.start()
    yield handler


def set_consumer(handler: MSProcessingHandler, name: str = "p1") -> StreamConsumer:
    return StreamConsumer(handler.hdf5_stream, name, handler.handle_set, on_dead=handler.set_dead)


def ms_consumer(handler: MSProcessingHandler, name: str = "p1") -> StreamConsumer:
    return StreamConsumer(handler.ms_stream, name, handler.handle_ms_message)


def fast_consumer(handler: MSProcessingHandler, name: str = "p1") -> StreamConsumer:
    """The fast-alert search's consumer (its own group on MS_PROCESSING)."""
    return StreamConsumer(handler.fast.stream, name, handler.fast.handle)


async def drain(
    consumer: StreamConsumer, done: Callable[[], Any] | None = None, timeout: float = 90.0
) -> None:
    """Poll until nothing is left to do (or ``done()`` is true), within ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            handled = await consumer.poll_once(block_ms=50)
            await consumer._flush_acks()
            if done is not None:
                if await done():
                    return
            elif handled == 0 and not consumer._retry_due:
                return


async def messages(redis: Redis, config: Config, kind: MessageType) -> list[Message]:
    stream = Keys(config.redis.namespace).stream(kind.value)
    return [decode(f[ENTRY_FIELD], 1 << 20) for _, f in await redis.xrange(stream)]


async def block_messages(redis: Redis, config: Config) -> list[Message]:
    found = await messages(redis, config, MessageType.MS_PROCESSING)
    return [m for m in found if m.payload["kind"] == "block"]


async def chunk_messages(redis: Redis, config: Config) -> list[Message]:
    found = await messages(redis, config, MessageType.MS_PROCESSING)
    return [m for m in found if m.payload["kind"] == "chunk"]


def stream_of(handler: MSProcessingHandler, kind: MessageType) -> ReliableStream:
    return handler.hdf5_stream if kind is MessageType.HDF5_PROCESSING else handler.ms_stream


def fork_and_wait(pid_file: str) -> None:
    """A worker job that forks as the converter does and then hangs: the child records its
    pid and sleeps (run with the processor jobs' fork rule armed)."""
    import os
    import time

    from dsa110d.services.processor_jobs import _children_die_with_worker

    _children_die_with_worker()
    child = os.fork()
    if child == 0:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(120)
        os._exit(0)
    time.sleep(120)
