"""Poison input and the watcher's fault boundaries: a file whose probe fails in any way (even
by killing the probe process) is a fault of that file, a set that cannot be announced is
failed with its reason, and everything else goes on: good sets are announced once, later
sets still time out."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import h5py
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from dsa110d.config import Config
from dsa110d.science.hdf5.ingest import FileFault
from dsa110d.science.hdf5.subbands import parse_subband_name, subband_file_name
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.base import Health
from dsa110d.services.watcher import (
    PROBE_MODULES,
    HDF5EventHandler,
    HDF5WatcherService,
    isolated_prober,
)
from dsa110d.state.sets import ErrorKind, NewFile, SetState
from dsa110d.workers import DEATHS_DEGRADED, WorkerPool
from tests.integration.services.watcher.watcherkit import (
    CRASH_MARKER,
    HANG_MARKER,
    N_SUBBANDS,
    announced,
    announced_paths,
    by_set,
    fingerprint,
    land_all,
    probe_or_crash,
)

pytestmark = pytest.mark.anyio
TIMEOUT_SEC = 0.3
"""processing_timeout_sec of these tests."""
HANG_DEADLINE_SEC = 8.0
"""A probe job's deadline in the hang test."""


def _events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_a_set_that_cannot_be_announced_is_failed_and_later_sets_still_time_out(
    watcher_config: Callable[..., Config], redis: aioredis.Redis
) -> None:
    """A complete set whose record holds a non-finite declination (an older watcher let it
    in): its announcement cannot be encoded. It is failed with the reason, not left claimed,
    and the incomplete set after it still times out, on this pass and every later one."""
    config = watcher_config(services__hdf5_watcher__processing_timeout_sec=100.0)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    name_time = 1773986400.0
    poisoned = [
        NewFile("2026-03-20T06:00:00", sb, f"/data/{sb}.hdf5", name_time, 2461119.75, 12.9,
                float("nan"))
        for sb in range(N_SUBBANDS)
    ]  # fmt: skip
    later = NewFile("2026-03-20T06:05:09", 0, "/data/l.hdf5", name_time + 309, 2461119.7536)
    await handler.sets.add_files([*poisoned, later], N_SUBBANDS)
    with capture_logs() as logs:
        await handler.check_open_sets(now=time.time() + 101)
        await handler.check_open_sets(now=time.time() + 102)
    record = await handler.sets.get("2026-03-20T06:00:00")
    assert record is not None and record.state is SetState.FAILED
    (error,) = record.errors
    assert error.kind == ErrorKind.UNANNOUNCEABLE
    assert "set 2026-03-20T06:00:00: cannot be announced" in error.reason
    assert "not JSON" in error.reason and "\n" not in error.reason
    assert len(_events(logs, "set_failed")) == 1
    timed_out = await handler.sets.get("2026-03-20T06:05:09")
    assert timed_out is not None and timed_out.state is SetState.INCOMPLETE
    assert await announced(redis, config) == []
    assert await handler.sets.open_sets() == []


async def test_files_with_a_non_finite_declination_are_faults_and_a_later_set_times_out(
    watcher_config: Callable[..., Config], redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    config = watcher_config(
        services__hdf5_watcher__processing_timeout_sec=TIMEOUT_SEC,
        services__hdf5_watcher__on_incomplete="fail",
    )
    incoming = config.paths.incoming_dir
    groups = by_set(tiny_sets.files)
    poisoned = land_all(groups[0], incoming)
    for path in poisoned:
        with h5py.File(path, "r+") as f:
            f["Header/extra_keywords/phase_center_dec"][()] = float("nan")
    land_all(groups[1][:2], incoming)  # the later set stays incomplete
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await anyio.sleep(TIMEOUT_SEC + 0.05)
        await handler.check_open_sets()
        await handler.tick()
    faults = _events(logs, "subband_fault")
    reasons = sorted(str(f["reason"]) for f in faults)  # once each, naming each file
    width = len(str(poisoned[0]))  # the names differ only in their digits
    assert [r[:width] for r in reasons] == sorted(map(str, poisoned))
    assert all("is not a declination" in r for r in reasons)
    later = await handler.sets.get(tiny_sets.set_ids[1])
    assert later is not None and later.state is SetState.FAILED
    assert [e.kind for e in later.errors] == [ErrorKind.INCOMPLETE]
    assert await announced(redis, config) == []


async def test_a_file_that_kills_the_probe_process_is_a_fault_and_the_rest_goes_on(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    """The probe process dies of a real SIGSEGV on one file of a set's worth: the part is
    retried a file per job, the file is recorded once (and not probed again), the good
    subbands of that part are announced, and a fresh process probes the next set."""
    incoming = config.paths.incoming_dir
    groups = by_set(tiny_sets.files)
    good = land_all(groups[0], incoming)
    name = parse_subband_name(good[0])
    assert name is not None
    poison = incoming / subband_file_name(name.timestamp + timedelta(seconds=1), 9)
    poison.write_bytes(CRASH_MARKER + b"\0" * 4096)  # sorts among set 0's files
    before = fingerprint([*good, poison])
    async with WorkerPool(1, PROBE_MODULES) as pool:
        handler = HDF5EventHandler(config, redis, prober=isolated_prober(pool, probe_or_crash))
        with capture_logs() as logs:
            await handler.start()
            await handler.tick()
            deaths = pool.recent_deaths()
            land_all(groups[1], incoming)
            await handler.tick()
            await handler.tick()
        assert deaths >= 1 and pool.recent_deaths() == deaths  # the poison was not re-probed
        assert len(pool.pids) == 1
    messages = await announced(redis, config)
    assert [m.payload["set_id"] for m in messages] == tiny_sets.set_ids[:2]
    assert announced_paths(messages[0]) == [str(p) for p in good]
    (fault,) = _events(logs, "subband_fault")
    reason = str(fault["reason"])
    assert reason.startswith(str(poison)) and "SIGSEGV" in reason, reason
    assert fault["kind"] == ErrorKind.BAD_FILE
    record = await handler.sets.get(tiny_sets.set_ids[0])
    assert record is not None and [e.path for e in record.errors] == [str(poison)]
    assert fingerprint([*good, poison]) == before


async def test_a_symlink_loop_does_not_stop_the_watcher(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    groups = by_set(tiny_sets.files)
    land_all(groups[0], incoming)
    loop = incoming / groups[1][0].name
    loop.symlink_to(loop)
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
    (fault,) = _events(logs, "subband_fault")
    assert str(fault["reason"]).startswith(str(loop)) and "loop" in str(fault["reason"])
    assert [m.payload["set_id"] for m in await announced(redis, config)] == tiny_sets.set_ids[:1]
    shutil.rmtree(incoming)  # the loop must not trouble the fixture's clean-up either


async def test_a_symlink_to_a_name_that_is_not_utf8_does_not_stop_the_watcher(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    """The target's name is bytes no UTF-8 text holds: no record or message could carry it
    (the state server's client refused it, and the watcher crashed on every restart)."""
    incoming = config.paths.incoming_dir
    groups = by_set(tiny_sets.files)
    land_all(groups[0], incoming)
    undecodable = os.path.join(os.fsencode(incoming), b"\xff\xfe.hdf5")
    shutil.copyfile(groups[1][0], undecodable)
    link = incoming / groups[1][0].name
    os.symlink(undecodable, os.fsencode(link))
    handler = HDF5EventHandler(config, redis)
    with capture_logs() as logs:
        await handler.start()
        await handler.tick()
    (fault,) = _events(logs, "subband_fault")
    assert str(fault["reason"]).startswith(str(link)) and "not UTF-8" in str(fault["reason"])
    assert [m.payload["set_id"] for m in await announced(redis, config)] == tiny_sets.set_ids[:1]


async def test_a_file_that_hangs_the_probe_process_is_killed_and_recorded(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    """A probe job past its deadline kills its worker; the part is retried a file per job,
    the hanging file is recorded with the reason, the good ones are announced."""
    incoming = config.paths.incoming_dir
    good = land_all(by_set(tiny_sets.files)[0], incoming)
    name = parse_subband_name(good[0])
    assert name is not None
    hanger = incoming / subband_file_name(name.timestamp + timedelta(seconds=1), 9)
    hanger.write_bytes(HANG_MARKER + b"\0" * 4096)
    async with WorkerPool(1, PROBE_MODULES) as pool:
        # a deadline well above a fresh worker's imports (each kill costs one; seconds when
        # the host is loaded), well below the hang
        prober = isolated_prober(pool, probe_or_crash, base_sec=HANG_DEADLINE_SEC, per_file_sec=0)
        handler = HDF5EventHandler(config, redis, prober=prober)
        with capture_logs() as logs:
            await handler.start()
    (message,) = await announced(redis, config)
    assert announced_paths(message) == [str(p) for p in good]
    (fault,) = _events(logs, "subband_fault")
    reason = str(fault["reason"])
    assert reason.startswith(str(hanger)), reason
    assert f"took more than {HANG_DEADLINE_SEC:g} s (killed)" in reason, reason


async def test_probe_processes_dying_again_and_again_degrade_the_watcher(
    config: Config, tmp_path: Path
) -> None:
    crashers = []
    for i in range(DEATHS_DEGRADED):
        crashers.append(tmp_path / f"crasher{i}")
        crashers[-1].write_bytes(CRASH_MARKER)
    service = HDF5WatcherService()
    async with WorkerPool(1, PROBE_MODULES) as pool:
        service.probes = pool
        prober = isolated_prober(pool, probe_or_crash)
        for crasher in crashers[:-1]:
            (outcome,) = await prober([str(crasher)], str(tmp_path))
            assert isinstance(outcome, FileFault) and "SIGSEGV" in outcome.reason
        assert service.health().health is Health.HEALTHY
        await prober([str(crashers[-1])], str(tmp_path))
        report = service.health()
    assert report.health is Health.DEGRADED
    assert f"{DEATHS_DEGRADED} probe processes died recently" in report.reason
