"""The MS processor end to end on a real server, real worker processes and simulated sets:
set -> MS -> chunk record and message; blocks complete, by timeout and re-run by a late chunk;
racing processors; conversion failures to the dead letters; the conversion timeout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import astropy.units as u
import pandas as pd
import pytest
from astropy.coordinates import TETE, EarthLocation, SkyCoord
from astropy.time import Time

from dsa110d.config import Config
from dsa110d.contracts import BlockProcessed
from dsa110d.messages import MessageType
from dsa110d.science.atomic import COMPLETE_MARKER, is_complete_dir
from dsa110d.science.constants import OVRO_HEIGHT_M, OVRO_LAT_RAD, OVRO_LON_RAD
from dsa110d.science.photometry.stage import SCHEMA
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.blocks import BlockState
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.sets import Sets, SetState
from dsa110d.workers import WorkerPool
from tests.integration.services.processorkit import (
    FIRST_BLOCK,
    block_messages,
    chunk_messages,
    drain,
    first_block,
    land_and_announce,
    processor,
    processor_config,
    set_consumer,
    set_files,
    worker_pool,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


POINTING_TOL_RAD = 5e-5
"""The chunk's pointing declination against astropy's, rad (10 arcsec: a fraction of the
precession since J2000 it must include, ~0.13 deg here)."""


def _icrs_dec_of_the_zenith(unix_s: float) -> float:
    """The ICRS declination of the apparent zenith at OVRO at ``unix_s``, by astropy's TETE
    frame (not the converter's own path)."""
    site = EarthLocation.from_geodetic(
        lon=OVRO_LON_RAD * u.rad, lat=OVRO_LAT_RAD * u.rad, height=OVRO_HEIGHT_M * u.m
    )
    when = Time(unix_s, format="unix")
    lst = when.sidereal_time("apparent", longitude=site.lon)
    zenith = SkyCoord(ra=lst, dec=OVRO_LAT_RAD * u.rad, frame=TETE(obstime=when, location=site))
    return float(zenith.transform_to("icrs").dec.rad)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one worker pool serves every test


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    """Two real worker processes for the module (their imports take seconds)."""
    async with worker_pool(2) as started:
        yield started


@pytest.fixture
def result(sim: tuple[SimulationResult, Path]) -> SimulationResult:
    """The simulated sets (without their catalog)."""
    return sim[0]


@pytest.fixture
def pconfig(
    tmp_path: Path, server_url: str, config: Config, sim: tuple[SimulationResult, Path]
) -> Callable[..., Config]:
    """``pconfig(**overrides)``: the processor's config in the test's namespace."""

    def make(**overrides: object) -> Config:
        return processor_config(
            tmp_path, server_url, sim[1], redis__namespace=config.redis.namespace, **overrides
        )

    return make


async def _convert(
    handler: MSProcessingHandler, cfg: Config, redis: Redis, files: list[Path]
) -> None:
    await land_and_announce(cfg, redis, files)
    await drain(set_consumer(handler))


async def test_an_announced_set_becomes_a_complete_ms_a_chunk_record_and_a_chunk_message(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig()
    set_id = result.set_ids[0]
    async with processor(cfg, redis, pool) as handler:
        await _convert(handler, cfg, redis, set_files(result, 0))
        ms = cfg.paths.ms_dir / f"{set_id}.ms"
        assert is_complete_dir(ms) and (ms / COMPLETE_MARKER).is_file()
        assert [p.name for p in cfg.paths.ms_dir.iterdir()] == [ms.name]  # no temporaries left
        chunk = await handler.blocks.chunk(set_id)
        assert chunk is not None and chunk.path == str(ms.resolve())
        assert chunk.start == pytest.approx(_start_unix(set_id), abs=1.0)
        assert 300 < chunk.end - chunk.start < 320  # one ~309 s set
        # FIELD states the pointing in ICRS: the zenith (dec = latitude) carried back to J2000
        mid = (chunk.start + chunk.end) / 2
        assert chunk.dec_rad == pytest.approx(_icrs_dec_of_the_zenith(mid), abs=POINTING_TOL_RAD)
        record = await Sets(redis, Keys(cfg.redis.namespace)).get(set_id)
        assert record is not None and record.state is SetState.CONVERTED
        chunks = await chunk_messages(redis, cfg)
        assert len(chunks) == 1 and chunks[0].payload["ms_path"] == str(ms.resolve())
        assert chunks[0].payload["blocks"] == [FIRST_BLOCK]
        stats = await handler.hdf5_stream.stats()
        assert stats.pending == 0 and stats.dead_letters == 0
        block = await handler.blocks.block(FIRST_BLOCK)
        assert block is not None and block.state is BlockState.PENDING and block.stale


def _start_unix(set_id: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(set_id).replace(tzinfo=UTC).timestamp()


async def test_a_block_with_all_its_chunks_gives_the_documented_parquet_and_a_block_message(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig()
    block = first_block(cfg)
    async with processor(cfg, redis, pool) as handler:
        await _convert(handler, cfg, redis, set_files(result, 0))
        assert await handler.check_blocks(now=block.end) == []  # waits for its second chunk
        await _convert(handler, cfg, redis, set_files(result, 1))
        done = await handler.check_blocks(now=block.end)
        assert [(d.block_id, d.version, d.missing_slots) for d in done] == [(FIRST_BLOCK, 1, ())]
        (parquet,) = (cfg.paths.results_dir / "photometry").glob(f"{FIRST_BLOCK}.v1.t*.parquet")
        (flag_qa,) = (cfg.paths.results_dir / "flags").glob(f"{FIRST_BLOCK}.flags.v1.t*.json")
        results = {"photometry": str(parquet.resolve()), "flag.flag_qa": str(flag_qa.resolve())}
        assert done[0].results == results
        frame = pd.read_parquet(parquet)
        assert list(frame.columns) == list(SCHEMA)
        assert len(frame) > 0 and set(frame["version"]) == {1}
        assert set(frame["block_id"]) == {FIRST_BLOCK} and (frame["n_vis"] > 0).all()
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None and record.state is BlockState.PROCESSED
        assert (
            record.version == 1 and not record.stale and record.chunks == tuple(result.set_ids[:2])
        )
        assert await handler.blocks.pending() == []
        assert set(record.qa) == set(cfg.pipeline.stages)  # each stage's summary, kept
        if "flag" in record.qa:
            fraction = record.qa["flag"]["flag_fraction"]
            assert 0 < fraction < 1 and handler.metrics.flag_fraction == fraction
        (message,) = await block_messages(redis, cfg)
        assert message.payload["block_id"] == FIRST_BLOCK and message.payload["version"] == 1
        assert message.payload["results"] == results
        assert not (cfg.paths.results_dir / ".staging").exists() or not any(
            (cfg.paths.results_dir / ".staging").iterdir()
        )
        assert await handler.check_blocks(now=block.end) == []  # exactly once


async def test_a_block_times_out_with_its_missing_chunks_recorded_and_a_late_chunk_supersedes(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig()
    block = first_block(cfg)
    late_slot = block.first_slot + 1
    timeout = cfg.services.ms_processor.processing_timeout_sec
    async with processor(cfg, redis, pool) as handler:
        await _convert(handler, cfg, redis, set_files(result, 0))
        assert await handler.check_blocks(now=time.time() + timeout - 5) == []  # still waiting
        (first,) = await handler.check_blocks(now=time.time() + timeout + 1)
        assert first.version == 1 and first.missing_slots == (late_slot,)
        v1 = pd.read_parquet(first.results["photometry"])
        assert set(v1["version"]) == {1}
        assert all("missing_chunks" in f for f in v1["flags"])
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None and record.missing_slots == (late_slot,)

        await _convert(handler, cfg, redis, set_files(result, 1))  # the late chunk
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None and record.stale and record.version == 1
        (second,) = await handler.check_blocks(now=block.end)
        assert second.version == 2 and second.missing_slots == ()
        # the re-run's file has its own name; once it committed, version 1's file is gone
        photometry = cfg.paths.results_dir / "photometry"
        assert sorted(photometry.glob(f"{FIRST_BLOCK}*")) == [Path(second.results["photometry"])]
        assert Path(second.results["photometry"]).name.startswith(f"{FIRST_BLOCK}.v2.t")
        v2 = pd.read_parquet(second.results["photometry"])
        assert set(v2["version"]) == {2}
        assert not any("missing_chunks" in f for f in v2["flags"])
        versions = [m.payload["version"] for m in await block_messages(redis, cfg)]
        assert versions == [1, 2]


async def test_a_paused_holder_that_lost_the_block_never_touches_the_new_holders_files(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    """A holder pauses past its lease (GC, a stalled disk, a suspended VM) and wakes up to
    publish its run while another holder has run the block and committed: it must neither
    replace the committed files nor leave its own behind, however the steps interleave."""
    from dsa110d.errors import FencingError
    from dsa110d.services import processor_jobs

    cfg = pconfig()
    block = first_block(cfg)
    keys = Keys(cfg.redis.namespace)
    async with processor(cfg, redis, pool) as handler:
        await _convert(handler, cfg, redis, set_files(result, 0))
        await _convert(handler, cfg, redis, set_files(result, 1))
        name = keys.block_lease(FIRST_BLOCK)
        paused = await handler.leases.acquire(name)
        assert paused is not None
        await redis.delete(keys.lease(name))  # its TTL ran out while it was paused
        (done,) = await handler.check_blocks(now=block.end)  # the new holder runs and commits
        committed = Path(done.results["photometry"])
        before = (committed.read_bytes(), committed.stat().st_ino)

        # the paused holder's staged run, exactly where its worker would have written it
        staging = cfg.paths.results_dir / ".staging" / f"{FIRST_BLOCK}.v1.t{paused.token}"
        staged = staging / "photometry" / f"{FIRST_BLOCK}.parquet"
        staged.parent.mkdir(parents=True)
        staged.write_bytes(b"the paused holder's stale photometry")
        outputs = {"photometry": f"photometry/{FIRST_BLOCK}.parquet"}
        # its rename, however late (even past a fence check it passed before pausing), lands
        # on a name of its own
        mine = processor_jobs.publish_outputs(
            staging, cfg.paths.results_dir, outputs, 1, paused.token
        )
        assert Path(mine["photometry"]) != committed
        assert (committed.read_bytes(), committed.stat().st_ino) == before
        processor_jobs.remove_outputs(mine)
        # and its commit is refused, taking back what it published
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(b"the paused holder's stale photometry")
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None
        with pytest.raises(FencingError):
            await handler.publish_run(
                paused, FIRST_BLOCK, 1, record.generation, list(record.chunks), (), staging,
                outputs,
            )  # fmt: skip
        assert sorted((cfg.paths.results_dir / "photometry").glob(f"{FIRST_BLOCK}*")) == [committed]
        assert (committed.read_bytes(), committed.stat().st_ino) == before
        after = await handler.blocks.block(FIRST_BLOCK)
        assert after is not None and after.results["photometry"] == str(committed)


async def test_two_processors_racing_on_the_same_set_and_block_do_each_once(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    import anyio

    cfg = pconfig()
    block = first_block(cfg)
    await land_and_announce(cfg, redis, set_files(result, 0))
    async with processor(cfg, redis, pool) as one, processor(cfg, redis, pool) as two:
        # the same set announced a second time (an operator's replay): two messages, two
        # processors, one conversion
        entries = await redis.xrange(one.hdf5_stream.name)
        await one.hdf5_stream.publish_raw(entries[0][1]["m"])
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, set_consumer(one, "p1"))
            tg.start_soon(drain, set_consumer(two, "p2"))
        for handler, name in ((one, "p1"), (two, "p2")):  # a lease refusal retries later
            await drain(set_consumer(handler, name))
        ms = cfg.paths.ms_dir / f"{result.set_ids[0]}.ms"
        assert is_complete_dir(ms)
        assert len(await chunk_messages(redis, cfg)) == 1
        stats = await one.hdf5_stream.stats()
        assert stats.pending == 0 and stats.dead_letters == 0

        await land_and_announce(cfg, redis, set_files(result, 1))
        await drain(set_consumer(one, "p1"))
        outcomes: list[object] = []

        async def check(handler: MSProcessingHandler) -> None:
            outcomes.extend(await handler.check_blocks(now=block.end))

        async with anyio.create_task_group() as tg:
            tg.start_soon(check, one)
            tg.start_soon(check, two)
        assert len(outcomes) == 1
        assert [m.payload["version"] for m in await block_messages(redis, cfg)] == [1]
        record = await one.blocks.block(FIRST_BLOCK)
        assert record is not None and record.version == 1


async def test_a_set_that_keeps_failing_goes_to_the_dead_letters_and_its_record_to_failed(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig(retry__max_attempts=2)
    landed = await land_and_announce(cfg, redis, set_files(result, 0))
    landed[3].write_bytes(landed[3].read_bytes()[:4096])  # truncated after announcement
    async with processor(cfg, redis, pool) as handler:

        async def dead() -> bool:
            return (await handler.hdf5_stream.stats()).dead_letters == 1

        await drain(set_consumer(handler), done=dead)
        (letter,) = await handler.hdf5_stream.dead_letters()
        assert landed[3].name in letter.reason
        assert len(letter.attempts) == 2
        record = await Sets(redis, Keys(cfg.redis.namespace)).get(result.set_ids[0])
        assert record is not None and record.state is SetState.FAILED
        assert any(landed[3].name in e.reason for e in record.errors)
        assert not (cfg.paths.ms_dir / f"{result.set_ids[0]}.ms").exists()
        assert await chunk_messages(redis, cfg) == []


async def test_block_messages_name_paths_inside_the_roots(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig()
    async with processor(cfg, redis, pool) as handler:
        for index in (0, 1):
            await _convert(handler, cfg, redis, set_files(result, index))
        await handler.check_blocks(now=time.time())
        (message,) = await block_messages(redis, cfg)
        roots = [r.resolve() for r in cfg.paths.data_roots()]
        for path in BlockProcessed.from_payload(message.payload, message.id).paths():
            assert any(Path(path).is_relative_to(r) for r in roots)
        assert message.type is MessageType.MS_PROCESSING


async def test_a_killed_conversions_temporaries_are_removed_by_the_next_one(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig()
    leftover = cfg.paths.ms_dir / f".tmp-{result.set_ids[0]}.ms.deadbeef"
    (leftover / "table.f0").parent.mkdir(parents=True)
    (leftover / "table.f0").write_bytes(b"half written")
    async with processor(cfg, redis, pool) as handler:
        await _convert(handler, cfg, redis, set_files(result, 0))
    assert [p.name for p in cfg.paths.ms_dir.iterdir()] == [f"{result.set_ids[0]}.ms"]


async def test_a_block_run_past_the_timeout_is_stopped_and_fails_after_the_attempts(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig(retry__max_attempts=2)
    block = first_block(cfg)
    async with processor(cfg, redis, pool) as handler:
        for index in (0, 1):
            await _convert(handler, cfg, redis, set_files(result, index))
    slow = pconfig(retry__max_attempts=2, services__ms_processor__processing_timeout_sec=1e-4)
    async with processor(slow, redis, pool) as handler:
        assert await handler.check_blocks(now=block.end) == []
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None and record.attempts == 1 and record.stale
        assert "longer than processing_timeout_sec" in record.error
        assert await handler.check_blocks(now=block.end) == []
        record = await handler.blocks.block(FIRST_BLOCK)
        assert record is not None and record.state is BlockState.FAILED
        assert await handler.blocks.pending() == [] and await block_messages(redis, cfg) == []
    assert not (cfg.paths.results_dir / "photometry").exists()
    staging = cfg.paths.results_dir / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


# last: it kills a worker, and its replacement takes seconds to import the science modules
async def test_a_conversion_past_the_timeout_is_stopped_and_counted_as_a_failure(
    pconfig: Callable[..., Config],
    redis: Redis,
    result: SimulationResult,
    pool: WorkerPool,
) -> None:
    cfg = pconfig(retry__max_attempts=1, services__ms_processor__processing_timeout_sec=0.05)
    await land_and_announce(cfg, redis, set_files(result, 0))
    async with processor(cfg, redis, pool) as handler:

        async def dead() -> bool:
            return (await handler.hdf5_stream.stats()).dead_letters == 1

        await drain(set_consumer(handler), done=dead)
        (letter,) = await handler.hdf5_stream.dead_letters()
        assert "longer than processing_timeout_sec" in letter.reason
        assert handler.metrics.failed == 1
    ms_dir = cfg.paths.ms_dir
    assert not (ms_dir / f"{result.set_ids[0]}.ms").exists()
