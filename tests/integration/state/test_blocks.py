"""Chunk and block records on a real server: idempotent chunk recording, late chunks reopening a
processed block, commits fenced by the block's lease, failures counted to failed."""

from __future__ import annotations

import pytest
from redis.asyncio.client import Pipeline

from dsa110d.config import Config
from dsa110d.errors import FencingError
from dsa110d.state.blocks import Blocks, BlockSpan, BlockState, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases

pytestmark = pytest.mark.anyio

BLOCK = BlockSpan("2026-03-20T06:00:00", 1773986400.0, 1773987000.0)
NEXT = BlockSpan("2026-03-20T06:10:00", 1773987000.0, 1773987600.0)


def _chunk(set_id: str, start: float, path: str = "") -> ChunkRecord:
    return ChunkRecord(set_id, set_id, start, start + 309.0, 0.65, path or f"/ms/{set_id}.ms")


async def _with_its_first_chunk(config: Config, redis: Redis) -> tuple[Blocks, Leases]:
    """BLOCK pending with its first chunk recorded; the block records and the leases."""
    keys = Keys(config.redis.namespace)
    blocks = Blocks(redis, keys)
    await blocks.record_chunk(_chunk("2026-03-20T06:00:00", BLOCK.start), [BLOCK])
    return blocks, Leases(redis, keys, config.leases)


async def test_recording_a_chunk_twice_changes_nothing(config: Config, redis: Redis) -> None:
    blocks = Blocks(redis, Keys(config.redis.namespace))
    chunk = _chunk("2026-03-20T06:00:00", BLOCK.start)
    assert await blocks.record_chunk(chunk, [BLOCK], now=100.0)
    assert not await blocks.record_chunk(chunk, [BLOCK], now=200.0)
    record = await blocks.block(BLOCK.block_id)
    assert record is not None and record.generation == 1 and record.state is BlockState.PENDING
    assert record.created_at == 100.0 and record.stale
    assert await blocks.chunk(chunk.chunk_id) == ChunkRecord(
        chunk.chunk_id, chunk.set_id, chunk.start, chunk.end, 0.65, chunk.path, 100.0
    )
    assert await blocks.pending() == [BLOCK.block_id]


async def test_an_overlap_chunk_marks_both_its_blocks(config: Config, redis: Redis) -> None:
    blocks = Blocks(redis, Keys(config.redis.namespace))
    await blocks.record_chunk(_chunk("2026-03-20T06:05:00", BLOCK.start + 300), [BLOCK, NEXT])
    assert await blocks.pending() == [BLOCK.block_id, NEXT.block_id]  # by end
    assert [b.block_id for b in await blocks.blocks()] == [BLOCK.block_id, NEXT.block_id]
    assert [c.chunk_id for c in await blocks.chunks(BLOCK.start, BLOCK.end)] == [
        "2026-03-20T06:05:00"
    ]


async def test_a_fenced_commit_closes_the_block_and_a_late_chunk_reopens_it(
    config: Config, redis: Redis
) -> None:
    blocks, leases = await _with_its_first_chunk(config, redis)
    record = await blocks.block(BLOCK.block_id)
    assert record is not None
    lease = await leases.acquire(f"block:{BLOCK.block_id}")
    assert lease is not None

    def commit(pipe: Pipeline) -> None:
        blocks.stage_commit(
            pipe, BLOCK.block_id, 1, record.generation, ["2026-03-20T06:00:00"], [5913289],
            {"photometry": "/r/p.parquet"},
        )  # fmt: skip

    await leases.run_fenced(lease, commit)
    done = await blocks.block(BLOCK.block_id)
    assert done is not None and done.state is BlockState.PROCESSED and done.version == 1
    assert not done.stale and done.missing_slots == (5913289,)
    assert done.results == {"photometry": "/r/p.parquet"}
    assert await blocks.pending() == []
    await blocks.record_chunk(_chunk("2026-03-20T06:05:09", BLOCK.start + 309), [BLOCK])
    late = await blocks.block(BLOCK.block_id)
    assert late is not None and late.stale and late.version == 1
    assert await blocks.pending() == [BLOCK.block_id]


async def test_a_commit_by_a_superseded_holder_is_refused(config: Config, redis: Redis) -> None:
    blocks, leases = await _with_its_first_chunk(config, redis)
    old = await leases.acquire(f"block:{BLOCK.block_id}", ttl_sec=0.05)
    assert old is not None
    import anyio

    await anyio.sleep(0.1)  # it expires; a new holder takes the block
    new = await leases.acquire(f"block:{BLOCK.block_id}")
    assert new is not None and new.token > old.token
    with pytest.raises(FencingError):
        await leases.run_fenced(
            old, lambda pipe: blocks.stage_commit(pipe, BLOCK.block_id, 1, 1, [], [], {})
        )
    record = await blocks.block(BLOCK.block_id)
    assert record is not None and record.version == 0 and record.state is BlockState.PENDING


async def test_a_commit_while_a_newer_chunk_arrived_keeps_the_block_pending(
    config: Config, redis: Redis
) -> None:
    blocks, leases = await _with_its_first_chunk(config, redis)
    seen = await blocks.block(BLOCK.block_id)
    assert seen is not None
    await blocks.record_chunk(_chunk("2026-03-20T06:05:09", BLOCK.start + 309), [BLOCK])
    lease = await leases.acquire(f"block:{BLOCK.block_id}")
    assert lease is not None
    await leases.run_fenced(
        lease, lambda p: blocks.stage_commit(p, BLOCK.block_id, 1, seen.generation, [], [], {})
    )
    record = await blocks.block(BLOCK.block_id)
    assert record is not None and record.version == 1 and record.stale
    assert await blocks.pending() == [BLOCK.block_id]


async def test_failures_count_up_to_failed_and_a_new_chunk_retries(
    config: Config, redis: Redis
) -> None:
    blocks, _ = await _with_its_first_chunk(config, redis)
    assert await blocks.record_failure(BLOCK.block_id, "StageError: boom", 2) == 1
    assert await blocks.pending() == [BLOCK.block_id]
    assert await blocks.record_failure(BLOCK.block_id, "StageError: boom", 2) == 2
    record = await blocks.block(BLOCK.block_id)
    assert record is not None and record.state is BlockState.FAILED and record.error
    assert await blocks.pending() == [] and await blocks.blocks(BlockState.FAILED) == [record]
    await blocks.record_chunk(_chunk("2026-03-20T06:05:09", BLOCK.start + 309), [BLOCK])
    again = await blocks.block(BLOCK.block_id)
    assert again is not None and again.state is BlockState.PENDING and again.attempts == 0


async def test_a_pruned_block_can_be_forgotten_from_the_pending_list(
    config: Config, redis: Redis
) -> None:
    keys = Keys(config.redis.namespace)
    blocks = Blocks(redis, keys)
    await blocks.record_chunk(_chunk("2026-03-20T06:00:00", BLOCK.start), [BLOCK])
    await redis.delete(keys.block_record(BLOCK.block_id))  # as housekeeping prunes it
    assert await blocks.block(BLOCK.block_id) is None
    await blocks.forget_pending(BLOCK.block_id)
    assert await blocks.pending() == [] and await blocks.pending_count() == 0
