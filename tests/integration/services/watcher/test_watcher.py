"""The HDF5 watcher against a real server and real subband files: one announcement per
complete set, whatever the arrival order, restarts, races or start-up timing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.watcher import HDF5EventHandler
from dsa110d.state.sets import SetState
from tests.integration.services.watcher.watcherkit import (
    N_SUBBANDS,
    announced,
    announced_paths,
    by_set,
    fingerprint,
    land,
    land_all,
    started_on,
)

pytestmark = pytest.mark.anyio


async def test_a_complete_set_is_announced_once_with_its_files(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    landed = land_all(first, incoming)
    before = fingerprint(landed)
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    await handler.tick()  # a second look finds nothing new to announce
    (message,) = await announced(redis, config)
    payload = message.payload
    assert payload["set_id"] == tiny_sets.set_ids[0]
    assert payload["partial"] is False and payload["missing_subbands"] == []
    assert [f["subband"] for f in payload["files"]] == list(range(N_SUBBANDS))
    paths = announced_paths(message)
    assert list(paths) == [str(p.resolve()) for p in landed]
    assert all(Path(p).is_absolute() and Path(p).parent == incoming.resolve() for p in paths)
    assert payload["time0_jd"] > 2.46e6 and payload["dec_rad"] is not None
    record = await handler.sets.get(payload["set_id"])
    assert record is not None and record.state is SetState.QUEUED
    assert record.message_id == message.id and record.errors == ()
    assert fingerprint(landed) == before  # input never modified


async def test_incomplete_files_and_other_names_are_ignored(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    land_all(first[:-1], incoming)
    last = first[-1]
    shutil.copyfile(last, incoming / last.name.replace(".hdf5", "_incomplete.hdf5"))
    shutil.copyfile(last, incoming / f".{last.name}.Ab12Cd")  # rsync temporary
    shutil.copyfile(last, incoming / "notes.hdf5")
    (incoming / "truth.json").write_text("{}")
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    assert await announced(redis, config) == []
    (record,) = await handler.sets.list()
    assert record.state is SetState.COLLECTING and record.missing == [N_SUBBANDS - 1]
    assert record.errors == ()  # ignored names are not faults
    (incoming / last.name.replace(".hdf5", "_incomplete.hdf5")).rename(incoming / last.name)
    await handler.tick()
    (message,) = await announced(redis, config)
    assert len(message.payload["files"]) == N_SUBBANDS


async def test_two_watchers_racing_on_one_directory_announce_each_set_once(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    a, b = HDF5EventHandler(config, redis), HDF5EventHandler(config, redis)
    await a.start()
    await b.start()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.watch, stop)
        tg.start_soon(b.watch, stop)
        await anyio.sleep(0.3)  # both watches armed
        for files in by_set(tiny_sets.files):
            land_all(files, incoming)
        # and both also rescan, concurrently with their event handling
        async with anyio.create_task_group() as scans:
            for handler in (a, b, a, b):
                scans.start_soon(handler.tick)
        await _wait_for_messages(redis, config, len(tiny_sets.set_ids))
        await anyio.sleep(0.5)  # room for a duplicate to show up
        stop.set()
        tg.cancel_scope.cancel()
    messages = await announced(redis, config)
    assert sorted(m.payload["set_id"] for m in messages) == sorted(tiny_sets.set_ids)
    assert a.announced + b.announced == len(tiny_sets.set_ids)


async def test_many_racing_handlers_on_the_same_files(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    land_all(tiny_sets.files, incoming)
    handlers = [HDF5EventHandler(config, redis) for _ in range(6)]
    async with anyio.create_task_group() as tg:
        for h in handlers:
            tg.start_soon(h.start)
    messages = await announced(redis, config)
    assert sorted(m.payload["set_id"] for m in messages) == sorted(tiny_sets.set_ids)


async def test_restart_midway_neither_repeats_nor_misses(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    sets = by_set(tiny_sets.files)
    first = HDF5EventHandler(config, redis)
    land_all([*sets[0], *sets[1][:2]], incoming)
    await first.start()  # set 0 announced, set 1 half recorded; then "stopped"
    land_all([*sets[1][2:], *sets[2]], incoming)
    second = HDF5EventHandler(config, redis)
    await second.start()
    third = HDF5EventHandler(config, redis)  # and again, with nothing new
    await third.start()
    messages = await announced(redis, config)
    assert [m.payload["set_id"] for m in messages] == tiny_sets.set_ids
    assert (first.announced, second.announced, third.announced) == (1, 2, 0)


async def test_a_crash_between_claim_and_publish_is_repaired_by_the_next_start(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    crashed = await started_on(config, redis, first[:-1])
    land(first[-1], incoming)
    await crashed.handle([str(incoming / first[-1].name)])
    # simulate the crash: undo the publish, keep the claim (state queued, still open)
    assert len(await announced(redis, config)) == 1
    stream = crashed.stream
    await redis.delete(stream.name, stream.keys.dedup(stream.name, tiny_sets.set_ids[0]))
    await redis.zadd(crashed.sets.keys.set_open(), {tiny_sets.set_ids[0]: 0})
    restarted = HDF5EventHandler(config, redis)
    await restarted.start()
    await restarted.start()
    (message,) = await announced(redis, config)
    assert message.payload["set_id"] == tiny_sets.set_ids[0]


async def test_files_arriving_during_the_start_up_scan_are_announced_once(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    sets = by_set(tiny_sets.files)
    land_all(sets[0], incoming)
    handler = HDF5EventHandler(config, redis)
    stop = anyio.Event()

    async def arrive() -> None:
        for files in sets[1:]:
            for p in files:
                land(p, incoming)
                await anyio.sleep(0.01)

    async def run_watcher() -> None:
        await handler.start()
        armed = False

        async def on_batch() -> bool:
            nonlocal armed
            if not armed:
                armed = True
                await handler.scan()
            return True

        await handler.watch(stop, on_batch)

    async with anyio.create_task_group() as tg:
        tg.start_soon(arrive)
        tg.start_soon(run_watcher)
        await _wait_for_messages(redis, config, len(tiny_sets.set_ids))
        await anyio.sleep(0.3)
        stop.set()
        tg.cancel_scope.cancel()
    messages = await announced(redis, config)
    assert sorted(m.payload["set_id"] for m in messages) == sorted(tiny_sets.set_ids)


async def test_a_file_still_growing_counts_only_once_its_size_is_stable(
    config: Config, redis: aioredis.Redis, tiny_sets: SimulationResult
) -> None:
    incoming = config.paths.incoming_dir
    first = by_set(tiny_sets.files)[0]
    handler = await started_on(config, redis, first[:-1])
    data = first[-1].read_bytes()
    growing = incoming / first[-1].name
    with growing.open("wb") as out:  # written in place under its final name (no rename)
        out.write(data[: len(data) // 2])
        out.flush()
        async with anyio.create_task_group() as tg:
            tg.start_soon(handler.handle, [str(growing)])
            await anyio.sleep(0.01)
            out.write(data[len(data) // 2 :])
    assert str(growing) in handler.unsettled
    assert await announced(redis, config) == []
    await handler.retry_unsettled()
    (message,) = await announced(redis, config)
    assert str(growing.resolve()) in announced_paths(message)
    record = await handler.sets.get(message.payload["set_id"])
    assert record is not None and record.errors == ()


async def _wait_for_messages(redis: aioredis.Redis, config: Config, n: int) -> None:
    with anyio.fail_after(20):
        while len(await announced(redis, config)) < n:
            await anyio.sleep(0.05)


@pytest.mark.parametrize("post_handle", ["none", "move"])
async def test_post_handle_moves_converted_sets_only_when_configured(
    post_handle: str,
    watcher_config: Callable[..., Config],
    redis: aioredis.Redis,
    tiny_sets: SimulationResult,
) -> None:
    config = watcher_config(services__hdf5_watcher__post_handle=post_handle)
    incoming = config.paths.incoming_dir
    landed = land_all(by_set(tiny_sets.files)[0], incoming)
    digests = {p.name: d for p, (d, _, _) in zip(landed, fingerprint(landed).values(), strict=True)}
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    (message,) = await announced(redis, config)
    set_id = message.payload["set_id"]
    await handler.tick()
    assert all(p.exists() for p in landed)  # not converted yet: nothing moves
    assert await handler.sets.mark(set_id, SetState.CONVERTING)
    assert await handler.sets.mark(set_id, SetState.CONVERTED)
    await handler.tick()
    processed = config.paths.processed_dir
    if post_handle == "none":
        assert all(p.exists() for p in landed)
        return
    assert not any(p.exists() for p in landed)
    moved = {p.name: fingerprint([p])[str(p)][0] for p in processed.iterdir()}
    assert moved == digests
    await handler.tick()  # gone from incoming: no new set, no new message
    assert len(await announced(redis, config)) == 1


async def test_a_failed_move_keeps_the_set_for_the_next_try(
    watcher_config: Callable[..., Config],
    redis: aioredis.Redis,
    tiny_sets: SimulationResult,
) -> None:
    config = watcher_config(services__hdf5_watcher__post_handle="move")
    landed = land_all(by_set(tiny_sets.files)[0], config.paths.incoming_dir)
    config.paths.processed_dir.parent.mkdir(parents=True, exist_ok=True)
    config.paths.processed_dir.write_text("a file where the directory should be\n")
    handler = HDF5EventHandler(config, redis)
    await handler.start()
    (message,) = await announced(redis, config)
    set_id = message.payload["set_id"]
    assert await handler.sets.mark(set_id, SetState.CONVERTING)
    assert await handler.sets.mark(set_id, SetState.CONVERTED)
    assert await handler.move_converted() == 0  # the service keeps running
    assert all(p.exists() for p in landed)
    config.paths.processed_dir.unlink()  # the operator mends it
    assert await handler.move_converted() == len(landed)
    assert not any(p.exists() for p in landed)
