"""Block planning: membership, overlaps, coverage, stable ids, readiness under real jitter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsa110d.config import ProcessorConfig
from dsa110d.errors import ConfigError
from dsa110d.science.pipeline.blocks import SLOT_TOLERANCE_SEC, BlockPlan, Chunk

SEED = ProcessorConfig()
PLAN = BlockPlan.from_config(SEED)
#: Real set duration (s): 24 integrations of 12.884902 s (DESIGN §2).
SET_SEC = 24 * 12.884902
#: Chunk start jitter between hosts' clocks (s).
JITTER_SEC = 5.0
NOV_2026 = 1_795_000_000.0  # a Unix time in November 2026

plans = st.builds(
    lambda chunk, own, overlap, timeout: BlockPlan.from_config(
        ProcessorConfig(
            ms_chunk_duration_min=chunk,
            mosaic_duration_min=chunk * own,
            mosaic_overlap_min=chunk * overlap,
            processing_timeout_sec=timeout,
        )
    ),
    st.sampled_from([1.0, 2.5, 5.0]),
    st.integers(2, 24),
    st.integers(0, 1),
    st.floats(1, 4000),
)
times = st.floats(NOV_2026 - 1e8, NOV_2026 + 1e8)


def test_seed_block_has_thirteen_chunks_of_five_minutes() -> None:
    block = PLAN.block(PLAN.slot_of(NOV_2026) // 12)
    assert len(block.slots) == 13
    assert block.end - block.start == pytest.approx(65 * 60)


def test_block_ids_are_utc_hours_for_the_seed() -> None:
    chunk = Chunk(NOV_2026 + 1000, NOV_2026 + 1300)
    (block,) = PLAN.blocks_of_chunk(chunk)
    assert block.id.endswith(":00:00")
    assert PLAN.block_by_id(block.id) == block


@given(plans, times, st.floats(60, 400))
def test_chunk_belongs_to_exactly_the_blocks_that_cover_its_mid_time(
    plan: BlockPlan, start: float, duration: float
) -> None:
    chunk = Chunk(start, start + duration)
    blocks = plan.blocks_of_chunk(chunk)
    for index in range(blocks[0].index - 3, blocks[-1].index + 4):
        block = plan.block(index)
        covers = block.start <= chunk.mid < block.end
        assert (block in blocks) == covers
        assert (chunk in plan.members(block, [chunk])) == covers


@given(plans, st.integers(-100_000, 100_000))
def test_consecutive_blocks_overlap_as_configured_with_no_gap(plan: BlockPlan, k: int) -> None:
    block, after = plan.block(k), plan.block(k + 1)
    shared = set(block.slots) & set(after.slots)
    assert len(shared) == plan.overlap_slots
    assert after.start == pytest.approx(block.end - plan.overlap_slots * plan.slot_sec)
    assert after.first_slot <= block.last_slot + 1  # no slot falls between them
    assert len(block.slots) == plan.chunks_per_block


@given(plans, times)
def test_every_instant_is_in_one_block_or_two_in_an_overlap(plan: BlockPlan, t: float) -> None:
    slot = plan.slot_of(t)
    blocks = plan.blocks_of_slot(slot)
    assert 1 <= len(blocks) <= 2
    assert all(b.first_slot <= slot <= b.last_slot for b in blocks)
    if len(blocks) == 2:
        assert slot >= blocks[1].first_slot and slot <= blocks[0].last_slot


@given(plans, times, st.floats(-JITTER_SEC, JITTER_SEC))
def test_ids_are_stable_under_start_jitter_within_a_slot(
    plan: BlockPlan, t: float, jitter: float
) -> None:
    slot_start = plan.slot_of(t) * plan.slot_sec
    chunk = Chunk(slot_start + 0.4 * plan.slot_sec, slot_start + 0.6 * plan.slot_sec)
    moved = Chunk(chunk.start + jitter, chunk.end + jitter)
    assert [b.id for b in plan.blocks_of_chunk(chunk)] == [
        b.id for b in plan.blocks_of_chunk(moved)
    ]
    for block in plan.blocks_of_chunk(chunk):
        assert plan.block_by_id(block.id) == block


def real_stream(first_start: float, n: int, jitters: list[float]) -> list[Chunk]:
    """Sets of ~309 s back to back, each start jittered by a node's clock."""
    return [
        Chunk(first_start + i * SET_SEC + j, first_start + (i + 1) * SET_SEC + j)
        for i, j in zip(range(n), jitters, strict=False)
    ]


@settings(max_examples=50)
@given(
    st.floats(NOV_2026, NOV_2026 + 86400),
    st.lists(st.floats(-JITTER_SEC, JITTER_SEC), min_size=60, max_size=60),
)
def test_a_real_cadence_stream_completes_every_block_it_covers(
    start: float, jitters: list[float]
) -> None:
    chunks = real_stream(start, 60, jitters)
    assert SLOT_TOLERANCE_SEC > JITTER_SEC
    first = PLAN.blocks_of_chunk(chunks[0])[-1].index + 1
    last = PLAN.blocks_of_chunk(chunks[-1])[0].index - 1
    assert last >= first
    for index in range(first, last + 1):
        block = PLAN.block(index)
        status = PLAN.status(block, chunks, now=block.end)
        assert status.readiness == "complete", (block.id, status.missing_slots)
        # the members hold the whole block's time, with no chunk counted twice
        assert len(status.chunks) == len(set(status.chunks))
        assert 12 <= len(status.chunks) <= 13


def test_a_lost_chunk_waits_then_times_out_recording_its_slot() -> None:
    block = PLAN.block(PLAN.slot_of(NOV_2026) // 12 + 1)
    chunks = [Chunk(s * PLAN.slot_sec + 2, (s + 1) * PLAN.slot_sec + 2) for s in block.slots]
    lost = chunks.pop(6)
    status = PLAN.status(block, chunks, now=block.end + 10)
    assert status.readiness == "waiting"
    assert status.missing_slots == (PLAN.chunk_slot(lost),)
    late = PLAN.status(block, chunks, now=block.end + SEED.processing_timeout_sec)
    assert late.readiness == "timeout" and late.ready
    assert late.missing_slots == (PLAN.chunk_slot(lost),)
    assert PLAN.status(block, [*chunks, lost], now=block.end).readiness == "complete"


def test_chunks_from_other_blocks_do_not_complete_a_block() -> None:
    block = PLAN.block(PLAN.slot_of(NOV_2026) // 12)
    others = [
        Chunk(s * PLAN.slot_sec, (s + 1) * PLAN.slot_sec) for s in PLAN.block(block.index + 3).slots
    ]
    status = PLAN.status(block, others, now=block.end)
    assert status.missing_slots == tuple(block.slots)
    assert status.chunks == ()


@pytest.mark.parametrize(
    ("key", "minutes"), [("mosaic_duration_min", 62), ("mosaic_overlap_min", 3)]
)
def test_durations_off_the_chunk_grid_are_config_errors(key: str, minutes: float) -> None:
    with pytest.raises(ConfigError, match=key):
        BlockPlan.from_config(ProcessorConfig(**{key: minutes}))


def test_bad_block_ids_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="not"):
        PLAN.block_by_id("yesterday")
    with pytest.raises(ConfigError, match="grid"):
        PLAN.block_by_id("2026-11-26T12:05:00")
    assert math.isfinite(PLAN.slot_sec)
