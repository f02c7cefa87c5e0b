"""The probe cache: a restart probes no file it already knows (same path, size, mtime and
inode), records and announces nothing twice, and probes a file replaced under its name; a
backlog's parts are spread over several probe processes, the extra ones retiring after."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.science.hdf5.ingest import ProbeOutcome
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services import watcher, watcher_intake
from dsa110d.services.watcher import PROBE_MODULES, HDF5EventHandler, isolated_prober
from dsa110d.state.keys import Keys
from dsa110d.workers import WorkerPool
from tests.integration.services.watcher.watcherkit import (
    announced,
    by_set,
    land_all,
    probe_noting_pid,
)

pytestmark = pytest.mark.anyio


class CountingProber:
    """The real probe (in a thread), counting the files it was asked to open."""

    def __init__(self) -> None:
        self.probed: list[str] = []

    async def __call__(self, paths: list[str], root: str) -> list[ProbeOutcome]:
        self.probed += paths
        return await watcher.probe_in_threads(paths, root)


async def _start(config: Config, redis: aioredis.Redis) -> CountingProber:
    prober = CountingProber()
    await HDF5EventHandler(config, redis, prober=prober).start()
    return prober


async def test_a_restart_probes_no_known_file_and_a_replaced_one_again(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    first, second = by_set(tiny_sets.files)[:2]
    landed = land_all(first, config.paths.incoming_dir)
    (junk := config.paths.incoming_dir / "2026-03-20T06:30:00_sb00.hdf5").write_bytes(b"junk")

    cold = await _start(config, redis)
    assert sorted(cold.probed) == sorted(str(p) for p in [*landed, junk])
    assert len(await announced(redis, config)) == 1

    warm = await _start(config, redis)  # a restart: nothing changed
    assert warm.probed == []
    assert len(await announced(redis, config)) == 1  # recorded once, announced once

    # a file replaced under its name (rename over it: another inode), a new set landing,
    # and a file gone while no watcher ran (its entry is dropped)
    replacement = landed[0].with_suffix(".tmp")
    shutil.copy2(landed[0], replacement)
    os.replace(replacement, landed[0])
    junk.unlink()
    more = land_all(second, config.paths.incoming_dir)
    again = await _start(config, redis)
    assert sorted(again.probed) == sorted(str(p) for p in [landed[0], *more])
    assert len(await announced(redis, config)) == 2
    host = HDF5EventHandler(config, redis).producer.host
    cached = await redis.hkeys(Keys(config.redis.namespace).probe_cache(host))  # type: ignore[misc]
    assert sorted(cached) == sorted(str(p) for p in [*landed, *more])


async def test_a_backlog_is_spread_over_probe_processes_the_extra_ones_retiring(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult, tmp_path: Path
) -> None:
    incoming = config.paths.incoming_dir
    template = by_set(tiny_sets.files)[0]
    n = 2 * watcher_intake.BACKLOG_CHUNK + len(template)  # three parts
    for i in range(n):  # copies under distinct names (the probe reads each; bad or good)
        name = f"2026-03-20T07:{i // 60:02d}:{i % 60:02d}_sb{i % 16:02d}.hdf5"
        shutil.copy(template[i % len(template)], incoming / name)
    async with WorkerPool(2, PROBE_MODULES, idle_sec=0.3, keep=1) as pool:
        pool.retire_grace_sec = 0.2
        (kept,) = pool.pids
        handler = HDF5EventHandler(
            config, redis, prober=isolated_prober(pool, probe_noting_pid), probe_lanes=2
        )
        await handler.start()
        pids = {int(p) for p in (incoming.parent / "probe-pids").read_text().split()}
        assert kept in pids and len(pids) == 2
        (extra,) = pids - {kept}
        with anyio.fail_after(5):  # the extra one exits by itself; the kept one stays
            while os.path.exists(f"/proc/{extra}") and _state(extra) != "Z":
                await anyio.sleep(0.05)
        assert await pool.run(os.getpid) == kept
    assert handler.seen.keys() == {str(p) for p in incoming.iterdir()}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"
