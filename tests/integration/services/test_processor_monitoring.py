"""The monitoring's registration made durable, on a real server (#18 monitoring re-runs): a
block run that publishes new sources records them as pending in its fenced commit; when the
registration after the commit fails (here the server refuses it: the monitored list's key
holds the wrong type), the block's results stay committed, the entry stays pending, and the
next pass over the pending blocks registers the source and asks for its re-runs, once.

A re-run the monitoring asked for (real workers, real wsclean) runs photometry alone: no image
is written, the record keeps the last run's image results, and the new source is measured; a
chunk recorded since makes the next run a full one. The chunk images come from the fast
search's (same data, same parameters: ``science.imaging.reuse``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import structlog.testing

from dsa110d.config import Config
from dsa110d.science.atomic import STAGING_DIR
from dsa110d.science.simulation.simulate import SimulationResult
from dsa110d.services import monitoring
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.blocks import BlockRecord, Blocks, BlockSpan, ChunkRecord
from dsa110d.state.connection import Redis, connect
from dsa110d.state.keys import Keys
from dsa110d.state.monitored import MonitoredSources
from dsa110d.workers import WorkerPool
from tests.integration.services.processorkit import (
    FIRST_BLOCK,
    drain,
    fast_consumer,
    land_and_announce,
    processor,
    processor_config,
    set_consumer,
    set_files,
    worker_pool,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(900)]

BLOCK = "2026-03-20T06:05:00"
EARLIER = "2026-03-19T06:05:00"
DAY_SEC = 86400.0
START = datetime.fromisoformat(BLOCK).replace(tzinfo=UTC).timestamp()
CANDIDATES = f"candidates/{BLOCK}.parquet"
CANDIDATE = "DSA J110056.4+600617"


async def no_worker(*_: Any) -> Any:
    raise AssertionError("no stage runs here")


def _stage_candidates(staging: Path) -> None:
    limits = [{"block_id": EARLIER, "limit_jy": 0.005, "rms_jy": 0.001, "flux_jy": 0.0}]
    (staging / "candidates").mkdir(parents=True)
    pd.DataFrame(
        {
            "candidate_id": [CANDIDATE], "ra_deg": [165.2], "dec_deg": [60.1],
            "first_block": [BLOCK], "detections": [1], "peak_jy": [0.06],
            "earlier_upper_limits": [json.dumps(limits)],
        }
    ).to_parquet(staging / CANDIDATES, index=False)  # fmt: skip


async def _commit_earlier(handler: MSProcessingHandler, ms: Path) -> None:
    """The earlier block, run and committed, its MS on disk (so it can re-run)."""
    span = BlockSpan(EARLIER, START - DAY_SEC, START - DAY_SEC + 300)
    chunk = ChunkRecord("e0", "e0", span.start, span.end, 1.0, str(ms))
    await handler.blocks.record_chunk(chunk, [span])
    record = await handler.blocks.block(EARLIER)
    lease = await handler.leases.acquire(Keys.block_lease(EARLIER))
    assert record is not None and lease is not None
    empty = Path(handler.config.paths.results_dir) / STAGING_DIR / "earlier"
    await handler.publish_run(lease, EARLIER, 1, record.generation, ["e0"], (), empty, {})
    await handler.leases.release(lease)


async def test_a_refused_registration_is_retried_on_the_next_pass_and_happens_once(
    config: Config, redis: Redis
) -> None:
    handler = MSProcessingHandler(config, redis, no_worker)
    await handler.start()
    ms = Path(config.paths.ms_dir) / "c0.ms"
    ms.mkdir(parents=True)
    await _commit_earlier(handler, ms)
    chunk = ChunkRecord("c0", "s0", START, START + 300, 1.0, str(ms))
    await handler.blocks.record_chunk(chunk, [BlockSpan(BLOCK, START, START + 300)])
    record = await handler.blocks.block(BLOCK)
    lease = await handler.leases.acquire(Keys.block_lease(BLOCK))
    assert record is not None and lease is not None
    staging = Path(config.paths.results_dir).absolute() / STAGING_DIR / f"{BLOCK}.v1"
    _stage_candidates(staging)
    await redis.set(handler.keys.monitored(), "not a hash")  # the server refuses HSETNX here

    results = await handler.publish_run(
        lease, BLOCK, 1, record.generation, ["c0"], (), staging,
        {monitoring.CANDIDATES_OUTPUT: CANDIDATES},
    )  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        await monitoring.after_commit(
            handler.monitored, handler.blocks, results, BLOCK, structlog.get_logger()
        )
    assert [e["event"] for e in logs] == ["new_sources_not_monitored"]
    assert "WRONGTYPE" in logs[0]["reason"]
    committed = await handler.blocks.block(BLOCK)
    assert committed is not None and committed.version == 1 and not committed.stale
    path = results[monitoring.CANDIDATES_OUTPUT]
    assert await handler.monitored.pending() == {BLOCK: path}
    assert await handler.blocks.pending() == []  # nothing asked to re-run yet

    await handler.leases.release(lease)
    await redis.delete(handler.keys.monitored())  # the server accepts it again
    assert await handler.check_blocks() == []  # the next pass: no block to run, the retry
    (entry,) = (await handler.monitored.decoded(dict)).sources
    assert entry["candidate_id"] == CANDIDATE and entry["rerun_blocks"] == [EARLIER, BLOCK]
    assert await handler.monitored.pending() == {}
    assert sorted(await handler.blocks.pending()) == [EARLIER, BLOCK]
    generations = {b: (await handler.blocks.block(b)) for b in (EARLIER, BLOCK)}

    # a second pass (or a second processor) registers nothing again: the re-runs stay single
    await redis.hset(handler.keys.monitoring_pending(), BLOCK, path)  # type: ignore[misc]
    assert await monitoring.retry_pending(
        handler.monitored, handler.blocks, structlog.get_logger()
    ) == [BLOCK]  # fmt: skip
    for block_id, before in generations.items():
        after = await handler.blocks.block(block_id)
        assert before is not None and after is not None
        assert after.generation == before.generation
        assert after.rerun_for_monitoring


async def test_a_damaged_or_vanished_table_is_settled_and_the_pass_goes_on(
    config: Config, redis: Redis, tmp_path: Path
) -> None:
    """A table that can never be registered (not Parquet, not a candidates table, or gone:
    superseded by a newer run or pruned) is logged and dropped, not retried forever, and the
    pass over the others goes on."""
    keys = Keys(config.redis.namespace)
    store, blocks = MonitoredSources(redis, keys), Blocks(redis, keys)
    damaged, wrong = tmp_path / "damaged.parquet", tmp_path / "wrong.parquet"
    damaged.write_text("not parquet")
    pd.DataFrame({"x": [1]}).to_parquet(wrong)
    for block_id, path in (("b1", damaged), ("b2", wrong), ("b3", tmp_path / "gone.parquet")):
        await redis.hset(keys.monitoring_pending(), block_id, str(path))  # type: ignore[misc]
    with structlog.testing.capture_logs() as logs:
        settled = await monitoring.retry_pending(store, blocks, structlog.get_logger())
    assert settled == ["b1", "b2", "b3"]
    assert await store.pending() == {} and (await store.decoded(dict)).sources == []
    assert [e["event"] for e in logs] == [
        "new_sources_unreadable", "new_sources_unreadable", "new_sources_superseded",
    ]  # fmt: skip


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with worker_pool(2) as started:
        yield started


def _image_files(config: Config) -> dict[str, int]:
    """Every published image file by name, with its inode (a rewrite is a new inode)."""
    images = Path(config.paths.results_dir) / "images"
    return {p.name: p.stat().st_ino for p in images.iterdir()}


async def _run(handler: MSProcessingHandler) -> BlockRecord:
    done = await handler.check_blocks()
    assert [d.block_id for d in done] == [FIRST_BLOCK]
    record = await handler.blocks.block(FIRST_BLOCK)
    assert record is not None and not record.stale
    return record


async def test_a_monitoring_rerun_measures_without_imaging_and_a_new_chunk_runs_image_again(
    tmp_path: Path, server_url: str, sim: tuple[SimulationResult, Path], pool: WorkerPool
) -> None:
    result, catalog = sim
    config = processor_config(
        tmp_path, server_url, catalog, pipeline__stages='["photometry", "image"]',
        imaging__size_px=256, imaging__scale_arcsec=8.0, imaging__fast_min_uv_lambda=0,
        services__ms_processor__processing_timeout_sec=900,
    )  # fmt: skip
    client = await connect(config)
    async with processor(config, client, pool) as handler:
        for index in (0, 1):
            await land_and_announce(config, handler.redis, set_files(result, index))
            await drain(set_consumer(handler), timeout=600.0)
        await drain(fast_consumer(handler), timeout=600.0)  # the chunks' fast searches
        first = await _run(handler)
        # the fast search imaged each chunk as it was converted, with the block's parameters,
        # and nothing has written to the MSs since: the block stage reused both images
        assert first.qa["image"]["chunks_imaged"] == 0
        images = _image_files(config)
        assert any(n.endswith(".mosaic.v1.t" + n.rsplit(".t", 1)[-1]) for n in images)
        before = pd.read_parquet(first.results["photometry"])
        seen = before.iloc[0]  # a source in the beam
        new = {"candidate_id": "DSA Jmonitored", "ra_deg": float(seen.ra_deg),
               "dec_deg": float(seen.dec_deg) + 0.05, "peak_jy": 0.05}  # fmt: skip
        assert await handler.monitored.register(new, [FIRST_BLOCK])

        rerun = await _run(handler)  # asked for by the monitoring alone: photometry only
        assert rerun.version == 2
        assert _image_files(config) == images  # no image written, none rewritten
        imaged = {k: v for k, v in first.results.items() if k.startswith("image.")}
        assert imaged and {k: rerun.results[k] for k in imaged} == imaged
        assert rerun.qa["image"] == first.qa["image"]
        assert rerun.results["photometry"] != first.results["photometry"]
        measured = pd.read_parquet(rerun.results["photometry"])
        assert "DSA Jmonitored" in set(measured.source_id)
        assert "DSA Jmonitored" not in set(before.source_id)

        # a chunk recorded since (as blocks_record_chunk marks it: generation up, pending)
        key = handler.keys.block_record(FIRST_BLOCK)
        await handler.redis.hincrby(key, "generation", 1)  # type: ignore[misc]
        await handler.redis.zadd(handler.keys.block_pending(), {FIRST_BLOCK: rerun.end})
        full = await _run(handler)
        assert full.version == 3
        fresh = {k: full.results[k] for k in imaged}
        assert all(".v3.t" in Path(p).name for p in fresh.values())
        assert all(not Path(p).exists() for p in imaged.values())  # superseded, removed
        assert full.qa["image"]["chunks_imaged"] == 0  # the same data: the images reused
    await client.aclose()
