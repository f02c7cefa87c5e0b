"""Block staging after a crash, on a real server: a holder killed between its commit and the
removal of its staging directory leaves that directory behind, and since its block is then
processed no later run of the block would ever remove it. The processor's sweep (at start-up
and after every pass over the pending blocks) does, and never touches a live run's staging.

This is the chaos suite's rare "staging left behind" failure
(``test_kill_9_at_ten_moments``: a kill in the block phase that landed after the commit),
made deterministic: the commit is the processor's own ``publish_run``, the kill is that the
run's clean-up never happens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dsa110d.config import Config
from dsa110d.science.atomic import STAGING_DIR
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.blocks import BlockRecord, BlockSpan, ChunkRecord
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys

pytestmark = pytest.mark.anyio

BLOCK = "2026-03-20T06:05:00"
START = datetime.fromisoformat(BLOCK).replace(tzinfo=UTC).timestamp()
OUTPUT = f"photometry/{BLOCK}.parquet"


async def no_worker(*_: Any) -> Any:
    raise AssertionError("the sweep runs no job")


async def _processed_record(handler: MSProcessingHandler) -> BlockRecord:
    record = await handler.blocks.block(BLOCK)
    assert record is not None
    return record


def _stage(staging: Path) -> None:
    """What a block job leaves in its staging directory: its outputs and the scratch."""
    (staging / "photometry").mkdir(parents=True)
    (staging / OUTPUT).write_bytes(b"photometry")
    (staging / ".scratch").mkdir()


async def test_a_holder_killed_after_its_commit_leaves_no_staging_after_recovery(
    config: Config, redis: Redis
) -> None:
    handler = MSProcessingHandler(config, redis, no_worker)
    await handler.start()
    chunk = ChunkRecord("c0", "s0", START, START + 300, 0.65, str(config.paths.ms_dir / "c0.ms"))
    await handler.blocks.record_chunk(chunk, [BlockSpan(BLOCK, START, START + 300)])
    lease_name = Keys.block_lease(BLOCK)
    root = Path(config.paths.results_dir).absolute() / STAGING_DIR

    # the run: lease, staged outputs, the real commit; then kill -9 before its clean-up
    killed = await handler.leases.acquire(lease_name)
    assert killed is not None
    record = await _processed_record(handler)
    committed_staging = root / f"{BLOCK}.v1.t{killed.token}"
    _stage(committed_staging)
    results = await handler.publish_run(
        killed, BLOCK, 1, record.generation, ["c0"], (), committed_staging, {"photometry": OUTPUT}
    )
    await redis.delete(handler.keys.lease(lease_name))  # its TTL runs out
    record = await _processed_record(handler)
    assert record.version == 1 and not record.stale and record.results == results
    assert await handler.blocks.pending() == []  # no later run of this block will come
    assert committed_staging.is_dir()  # the leftover (photometry/ emptied, .scratch kept)

    # a late chunk: version 2 is run by a holder that is superseded (paused past its lease)
    # and then by one still at work
    late = ChunkRecord("c1", "s1", START, START + 300, 0.65, str(config.paths.ms_dir / "c1.ms"))
    await handler.blocks.record_chunk(late, [BlockSpan(BLOCK, START, START + 300)])
    superseded = await handler.leases.acquire(lease_name)
    assert superseded is not None
    await redis.delete(handler.keys.lease(lease_name))
    live = await handler.leases.acquire(lease_name)
    assert live is not None and live.token > superseded.token
    superseded_staging = root / f"{BLOCK}.v2.t{superseded.token}"
    live_staging = root / f"{BLOCK}.v2.t{live.token}"
    _stage(superseded_staging)
    _stage(live_staging)
    # another block's run in flight, whose record has no committed version yet
    other = root / f"2026-03-20T06:10:00.v1.t{live.token + 1}"
    _stage(other)

    # the daemon restarts (or the block loop makes its next pass): the sweep
    restarted = MSProcessingHandler(config, redis, no_worker)
    await restarted.start()
    assert sorted(p.name for p in root.iterdir()) == sorted([live_staging.name, other.name])
    assert (live_staging / OUTPUT).read_bytes() == b"photometry"  # the live run untouched
    assert Path(results["photometry"]).read_bytes() == b"photometry"  # the results too
    assert await restarted.sweep_staging() == []  # nothing more, however often it runs
