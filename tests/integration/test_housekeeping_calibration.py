"""Housekeeping and the calibration registry: a pruned block's per-block index goes with its
record, the solutions (the record of what calibrated the published data) stay."""

from __future__ import annotations

import time

import pytest

from dsa110d.config import Config
from dsa110d.housekeeping import run_pass
from dsa110d.state.blocks import Blocks, BlockSpan, ChunkRecord
from dsa110d.state.calibration import Calibrations
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from tests.helpers.calrecords import solution

pytestmark = pytest.mark.anyio
BLOCK = BlockSpan("2026-03-20T06:00:00", 1773986400.0, 1773990000.0)


async def test_a_pruned_block_takes_its_registry_index_along(config: Config, redis: Redis) -> None:
    keys = Keys(config.redis.namespace)
    blocks, cal = Blocks(redis, keys), Calibrations(redis, keys)
    leases = Leases(redis, keys, config.leases)
    chunk = ChunkRecord(BLOCK.block_id, BLOCK.block_id, BLOCK.start, BLOCK.start + 300, 0.7, "/m")
    await blocks.record_chunk(chunk, [BLOCK])
    lease = await leases.acquire(keys.block_lease(BLOCK.block_id))
    assert lease is not None

    def commit(pipe: object) -> None:
        blocks.stage_commit(pipe, BLOCK.block_id, 1, 1, [chunk.chunk_id], [], {})  # type: ignore[arg-type]
        cal.stage_register(pipe, [solution("g-old")], {}, lease.token)  # type: ignore[arg-type]

    await leases.run_fenced(lease, commit)
    await leases.release(lease)
    later = time.time() + (config.housekeeping.record_retention_days + 1) * 86400
    report = await run_pass(config, redis, now=later)
    assert ("block", BLOCK.block_id) in {(r.kind, r.name) for r in report.removals}
    assert await redis.exists(keys.cal_block(BLOCK.block_id)) == 0
    assert await cal.solution("g-old") is not None
