"""Block planning: which 5-minute chunks make up which mosaic block, and when a block is ready.

Time is cut into a fixed grid of *slots* of ``ms_chunk_duration_min``, counted from the Unix
epoch (1970-01-01T00:00:00 UTC), so every host derives the same slots and block ids from a
chunk's times alone. Block ``k`` owns ``n`` slots (``mosaic_duration_min``) starting at slot
``k*n`` and also takes the last ``o`` slots (``mosaic_overlap_min``) of block ``k-1``.

A chunk goes into the slot holding its **mid-time**. Real chunk start times jitter by seconds
and a set lasts ~309 s rather than 300 s, so mid-times drift through the slot grid: a chunk is
never split between two slots, and now and then a slot receives no chunk although its time is
covered by its neighbours. :meth:`BlockPlan.missing_slots` therefore counts a slot as present
when a member chunk's time span covers the slot's centre (within :data:`SLOT_TOLERANCE_SEC`).

Everything here is pure: no clock, no files. Times are float seconds since the Unix epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from dsa110d.config import ProcessorConfig
from dsa110d.errors import ConfigError

SECONDS_PER_MINUTE = 60.0
#: How far (s) a chunk's span may stop short of a slot centre and still cover it: correlator
#: nodes' clocks differ by a few seconds (DESIGN §2), so consecutive chunks may leave gaps.
SLOT_TOLERANCE_SEC = 30.0
#: Durations (min) must be whole numbers of chunks to within this.
_GRID_TOLERANCE = 1e-9
BLOCK_ID_FORMAT = "%Y-%m-%dT%H:%M:%S"

Readiness = Literal["complete", "timeout", "waiting"]


@dataclass(frozen=True, order=True)
class Chunk:
    """One converted 5-minute Measurement Set: its time span (Unix s) and where it lives."""

    start: float
    end: float
    path: str = ""

    @property
    def mid(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class Block:
    """One mosaic block: slots ``first_slot .. last_slot`` inclusive, including the overlap."""

    index: int
    first_slot: int
    own_first_slot: int
    last_slot: int
    slot_sec: float

    @property
    def start(self) -> float:
        """Start of the block including the overlap taken from the previous block (Unix s)."""
        return self.first_slot * self.slot_sec

    @property
    def end(self) -> float:
        """End of the block (Unix s, exclusive)."""
        return (self.last_slot + 1) * self.slot_sec

    @property
    def slots(self) -> range:
        return range(self.first_slot, self.last_slot + 1)

    @property
    def id(self) -> str:
        """Stable name: the UTC time at which the block's own (non-overlap) slots begin."""
        own_start = self.own_first_slot * self.slot_sec
        return datetime.fromtimestamp(own_start, tz=UTC).strftime(BLOCK_ID_FORMAT)


@dataclass(frozen=True)
class BlockStatus:
    """Whether a block can be processed now, and the slots it lacks."""

    readiness: Readiness
    missing_slots: tuple[int, ...]
    chunks: tuple[Chunk, ...]

    @property
    def ready(self) -> bool:
        return self.readiness != "waiting"


def _whole_chunks(minutes: float, chunk_min: float, key: str) -> int:
    count = minutes / chunk_min
    if abs(count - round(count)) > _GRID_TOLERANCE * max(1.0, count):
        raise ConfigError(
            f"services.ms_processor.{key} ({minutes:g} min) must be a whole number of "
            f"ms_chunk_duration_min ({chunk_min:g} min)"
        )
    return round(count)


@dataclass(frozen=True)
class BlockPlan:
    """The block grid of one configuration (see the module docstring)."""

    slot_sec: float
    slots_per_block: int
    overlap_slots: int
    timeout_sec: float

    @classmethod
    def from_config(cls, config: ProcessorConfig) -> BlockPlan:
        chunk_min = config.ms_chunk_duration_min
        own = _whole_chunks(config.mosaic_duration_min, chunk_min, "mosaic_duration_min")
        overlap = _whole_chunks(config.mosaic_overlap_min, chunk_min, "mosaic_overlap_min")
        if overlap >= own:
            raise ConfigError("services.ms_processor.mosaic_overlap_min must be less than duration")
        return cls(chunk_min * SECONDS_PER_MINUTE, own, overlap, config.processing_timeout_sec)

    @property
    def chunks_per_block(self) -> int:
        return self.slots_per_block + self.overlap_slots

    def slot_of(self, time: float) -> int:
        """The slot holding an instant (Unix s)."""
        return math.floor(time / self.slot_sec)

    def chunk_slot(self, chunk: Chunk) -> int:
        """The slot a chunk fills: the one holding its mid-time."""
        return self.slot_of(chunk.mid)

    def block(self, index: int) -> Block:
        own = index * self.slots_per_block
        last = own + self.slots_per_block - 1
        return Block(index, own - self.overlap_slots, own, last, self.slot_sec)

    def block_by_id(self, block_id: str) -> Block:
        """The block named ``block_id`` (inverse of :attr:`Block.id`)."""
        try:
            own_start = datetime.strptime(block_id, BLOCK_ID_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError(f"block id {block_id!r} is not {BLOCK_ID_FORMAT}") from None
        slot = self.slot_of(own_start.timestamp() + 0.5 * self.slot_sec)
        index, rest = divmod(slot, self.slots_per_block)
        if rest:
            raise ConfigError(f"block id {block_id!r} is not on this plan's block grid")
        return self.block(index)

    def blocks_of_slot(self, slot: int) -> list[Block]:
        """Every block containing ``slot``: its own block, plus the next if in the overlap."""
        index = slot // self.slots_per_block
        blocks = [self.block(index)]
        if slot >= (index + 1) * self.slots_per_block - self.overlap_slots:
            blocks.append(self.block(index + 1))
        return blocks

    def blocks_of_chunk(self, chunk: Chunk) -> list[Block]:
        """Every block a chunk belongs to (one, or two when it lies in an overlap)."""
        return self.blocks_of_slot(self.chunk_slot(chunk))

    def members(self, block: Block, chunks: Iterable[Chunk]) -> list[Chunk]:
        """The chunks (of any set of known chunks) that belong to ``block``, in time order."""
        return sorted(
            c for c in chunks if block.first_slot <= self.chunk_slot(c) <= block.last_slot
        )

    def missing_slots(self, block: Block, chunks: Iterable[Chunk]) -> list[int]:
        """Slots of ``block`` neither filled by a member chunk nor covered by one's span."""
        members = self.members(block, chunks)
        filled = {self.chunk_slot(c) for c in members}
        missing = []
        for slot in block.slots:
            if slot in filled:
                continue
            centre = (slot + 0.5) * self.slot_sec
            if not any(
                c.start - SLOT_TOLERANCE_SEC <= centre < c.end + SLOT_TOLERANCE_SEC for c in members
            ):
                missing.append(slot)
        return missing

    def status(self, block: Block, chunks: Iterable[Chunk], now: float) -> BlockStatus:
        """Ready when no slot is missing, or once ``timeout_sec`` has passed since the end."""
        known = list(chunks)
        members = tuple(self.members(block, known))
        missing = tuple(self.missing_slots(block, members))
        if not missing:
            return BlockStatus("complete", missing, members)
        if now >= block.end + self.timeout_sec:
            return BlockStatus("timeout", missing, members)
        return BlockStatus("waiting", missing, members)
