"""The watcher probing a batch in parts ahead of the recording (several at once, finishing
out of order, or in worker processes): still one announcement per set, each fault recorded
and logged once, and every file remembered so a rescan probes nothing."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from dsa110d.config import Config
from dsa110d.science.hdf5.ingest import ProbeOutcome
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services import watcher_intake, watcher_probing
from dsa110d.services.watcher import HDF5EventHandler, pooled_prober, probe_in_threads
from dsa110d.state.sets import ErrorKind, SetState
from dsa110d.workers import WorkerPool
from tests.integration.services.watcher.watcherkit import announced, by_set, land

pytestmark = pytest.mark.anyio


class Reversed:
    """A prober whose later calls finish first (each waits less than the one before), and
    which counts the paths it was given."""

    def __init__(self) -> None:
        self.delay = 0.3
        self.paths: list[str] = []

    async def __call__(self, paths: list[str], root: str) -> list[ProbeOutcome]:
        self.paths += paths
        self.delay = max(0.0, self.delay - 0.1)
        await anyio.sleep(self.delay)
        return await probe_in_threads(paths, root)


def _land_with_a_bad_file(config: Config, tiny_sets: SimulationResult) -> tuple[list[Path], Path]:
    landed = [land(p, config.paths.incoming_dir) for s in by_set(tiny_sets.files) for p in s]
    bad = landed[1]  # set 0, sb01
    bad.write_bytes(bad.read_bytes()[:1000])
    return landed, bad


async def test_parts_finishing_out_of_order_announce_each_set_once_and_log_faults_once(
    config: Config,
    redis: aioredis.Redis,
    tiny_sets: SimulationResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watcher_intake, "BACKLOG_CHUNK", 5)  # 12 files: parts of 5, across sets
    landed, bad = _land_with_a_bad_file(config, tiny_sets)
    probers = [Reversed(), Reversed()]
    a, b = (HDF5EventHandler(config, redis, prober=p, probe_lanes=3) for p in probers)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:  # two watchers racing on one directory
            tg.start_soon(a.start)
            tg.start_soon(b.start)
        for handler in (a, b, a, b):
            await handler.tick()
    messages = await announced(redis, config)
    assert sorted(m.payload["set_id"] for m in messages) == sorted(tiny_sets.set_ids[1:])
    assert a.announced + b.announced == 2
    faults = [e for e in logs if e["event"] == "subband_fault"]
    assert len(faults) == 1 and str(bad) in str(faults[0]["reason"])
    record = await a.sets.get(tiny_sets.set_ids[0])
    assert record is not None and record.state is SetState.COLLECTING
    assert [(e.kind, e.path) for e in record.errors] == [(ErrorKind.BAD_FILE, str(bad))]
    # every file probed once per watcher, and remembered: the rescans probed nothing
    for prober, handler in zip(probers, (a, b), strict=True):
        assert sorted(prober.paths) == sorted(str(p) for p in landed)
        assert set(handler.seen) == {str(p) for p in landed}


async def test_a_backlog_probed_in_worker_processes_is_announced_once(
    config: Config,
    redis: aioredis.Redis,
    tiny_sets: SimulationResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watcher_intake, "BACKLOG_CHUNK", 4)
    monkeypatch.setattr(watcher_probing, "WORKER_MIN_FILES", 1)
    landed, bad = _land_with_a_bad_file(config, tiny_sets)
    async with WorkerPool(1) as pool:
        handler = HDF5EventHandler(config, redis, prober=pooled_prober(pool.run, 1), probe_lanes=2)
        with capture_logs() as logs:
            await handler.start()
            await handler.tick()
        assert pool.jobs_done >= 1  # some parts went to the worker
    messages = await announced(redis, config)
    assert sorted(m.payload["set_id"] for m in messages) == sorted(tiny_sets.set_ids[1:])
    faults = [e for e in logs if e["event"] == "subband_fault"]
    assert len(faults) == 1 and str(bad) in str(faults[0]["reason"])
    assert set(handler.seen) == {str(p) for p in landed}
