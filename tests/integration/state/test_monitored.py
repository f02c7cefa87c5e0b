"""The monitored list: a new source registered once however many processors see it, its
first and earlier blocks re-opened for a re-run by that one registration only, blocks whose
Measurement Sets are gone left to the mosaic's measurement; read back by dsa110ctl's
records and the web API's function."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pandas as pd
import pytest
import structlog
import structlog.testing
from redis.asyncio.client import Pipeline

from dsa110d.config import Config
from dsa110d.operations.records import new_sources
from dsa110d.services.monitoring import monitored_for_job, register_new_sources
from dsa110d.state.blocks import Blocks, BlockSpan, BlockState, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from dsa110d.state.monitored import MonitoredSources

pytestmark = pytest.mark.anyio

EARLY = BlockSpan("2026-03-19T07:00:00", 1773903600.0, 1773907200.0)
GONE = BlockSpan("2026-03-18T07:00:00", 1773817200.0, 1773820800.0)
FIRST = BlockSpan("2026-03-20T07:00:00", 1773990000.0, 1773993600.0)
PROCESSORS = 4


async def _processed(blocks: Blocks, leases: Leases, span: BlockSpan, ms: Path) -> None:
    """A block with one chunk at ``ms``, run and committed (not stale)."""
    chunk = ChunkRecord(span.block_id, span.block_id, span.start, span.start + 300, 1.0, str(ms))
    await blocks.record_chunk(chunk, [span])
    record = await blocks.block(span.block_id)
    assert record is not None
    lease = await leases.acquire(Keys.block_lease(span.block_id))
    assert lease is not None

    def commit(pipe: Pipeline) -> None:
        blocks.stage_commit(pipe, span.block_id, 1, record.generation, [chunk.chunk_id], [], {})

    await leases.run_fenced(lease, commit)
    await leases.release(lease)


def _candidates(path: Path) -> Path:
    limits = [
        {"block_id": GONE.block_id, "limit_jy": 0.006, "rms_jy": 0.0012, "flux_jy": 0.0004},
        {"block_id": EARLY.block_id, "limit_jy": 0.005, "rms_jy": 0.001, "flux_jy": -0.0003},
    ]
    frame = pd.DataFrame(
        {
            "candidate_id": ["DSA J110056.4+600617"], "ra_deg": [165.2], "dec_deg": [60.1],
            "first_block": [FIRST.block_id], "detections": [1], "peak_jy": [0.06],
            "earlier_upper_limits": [json.dumps(limits)],
        }
    )  # fmt: skip
    frame.to_parquet(path, index=False)
    return path


async def test_a_new_source_is_registered_once_and_its_blocks_re_run_once(
    config: Config, redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(config.redis.namespace)
    blocks, leases = Blocks(redis, keys), Leases(redis, keys, config.leases)
    kept = tmp_path / "kept.ms"
    kept.mkdir()
    await _processed(blocks, leases, GONE, tmp_path / "removed.ms")  # its MS is gone
    await _processed(blocks, leases, EARLY, kept)
    await _processed(blocks, leases, FIRST, kept)
    assert await blocks.pending() == []
    before = {s.block_id: await blocks.block(s.block_id) for s in (GONE, EARLY, FIRST)}
    results = {"image.candidates": str(_candidates(tmp_path / "c.parquet"))}
    added: list[list[str]] = []

    async def processor() -> None:
        store = MonitoredSources(redis, keys)
        added.append(await register_new_sources(store, Blocks(redis, keys), results))

    async with anyio.create_task_group() as tg:
        for _ in range(PROCESSORS):
            tg.start_soon(processor)
    assert sorted(len(a) for a in added) == [0] * (PROCESSORS - 1) + [1]
    # The re-runs: the first block and the earlier one with its MS, each generation once.
    assert sorted(await blocks.pending()) == sorted([EARLY.block_id, FIRST.block_id])
    for span in (EARLY, FIRST):
        now, then = await blocks.block(span.block_id), before[span.block_id]
        assert now is not None and then is not None
        assert now.generation == then.generation + 1 and now.stale
        assert now.state is BlockState.PROCESSED  # results stand until the re-run commits
    gone = await blocks.block(GONE.block_id)
    assert gone is not None and not gone.stale
    (record,) = (await new_sources(config)).sources
    assert record["first_block"] == FIRST.block_id
    assert record["rerun_blocks"] == [EARLY.block_id, FIRST.block_id]
    assert record["mosaic_only_blocks"] == [GONE.block_id]
    assert [e["block_id"] for e in record["earlier_upper_limits"]] == [
        GONE.block_id, EARLY.block_id,
    ]  # fmt: skip


async def test_a_damaged_entry_is_named_and_left_out_of_the_block_runs(
    config: Config, redis: Redis
) -> None:
    """One unreadable monitored entry must not stop every block run: the others still reach
    forced photometry, and the damaged one is logged by its id."""
    keys = Keys(config.redis.namespace)
    store = MonitoredSources(redis, keys)
    good = {"candidate_id": "DSA J1", "ra_deg": 165.2, "dec_deg": 60.1, "peak_jy": 0.06}
    assert await store.register(good)
    await redis.hset(keys.monitored(), "DSA J2", "{not json")  # type: ignore[misc]
    await redis.hset(keys.monitored(), "DSA J3", json.dumps({"ra_deg": 1.0}))  # type: ignore[misc]
    with structlog.testing.capture_logs() as logs:
        handed = await monitored_for_job(store, structlog.get_logger())
    assert handed == [["DSA J1", 165.2, 60.1, 0.06]]
    named = sorted(e["candidate_id"] for e in logs if e["event"] == "monitored_source_unreadable")
    assert named == ["DSA J2", "DSA J3"]


async def test_a_damaged_entry_is_named_and_the_rest_still_listed(
    config: Config, redis: Redis
) -> None:
    """What dsa110ctl and the web API list: each entry read on its own, so one that is not a
    JSON object, lacks a position or holds a limit without a value is named by its id, and
    the readable ones are still listed, first detected first."""
    keys = Keys(config.redis.namespace)
    store = MonitoredSources(redis, keys)
    later = {"candidate_id": "DSA J1", "ra_deg": 165.2, "dec_deg": 60.1, "first_block": "B2"}
    earlier = {"candidate_id": "DSA J9", "ra_deg": 10.0, "dec_deg": 20.0, "first_block": "B1"}
    assert await store.register(later) and await store.register(earlier)
    damaged = {
        "DSA J2": "{not json",
        "DSA J3": json.dumps(["DSA J3", 1.0, 2.0]),
        "DSA J4": json.dumps({"candidate_id": "DSA J4", "ra_deg": 1.0}),
        "DSA J5": json.dumps(
            {"candidate_id": "DSA J5", "ra_deg": 1.0, "dec_deg": 2.0,
             "earlier_upper_limits": [{"block_id": "B0"}]}
        ),
    }  # fmt: skip
    for candidate_id, raw in damaged.items():
        await redis.hset(keys.monitored(), candidate_id, raw)  # type: ignore[misc]
    found = await new_sources(config)
    assert found.sources == [earlier, later]
    assert [u.candidate_id for u in found.unreadable] == sorted(damaged)
    assert all(u.reason and "\n" not in u.reason for u in found.unreadable)
