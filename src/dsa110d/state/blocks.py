"""Chunk and block records: what the processor has converted and which blocks it has processed.

A **chunk** is one converted set (one 5-minute Measurement Set). Its record, a hash under
``Keys.chunk_record(chunk_id)`` (the chunk id is the set id), holds ``set_id``, ``start`` and
``end`` (Unix s), ``dec`` (rad), ``path`` (the MS) and ``recorded_at``; every chunk id is in
``Keys.chunk_index()`` scored by its start.

A **block** (``science.blocks``) record, a hash under ``Keys.block_record(block_id)``, holds
``start``/``end`` (Unix s), ``state`` (:class:`BlockState`), ``version`` (runs committed so
far: the Parquet rows of run n carry ``version`` n), ``generation`` (bumped each time a new
chunk of the block is recorded), ``done_generation`` (the generation the last committed run
saw), ``chunks`` and ``missing`` (JSON lists: the chunk ids used and the slots processed
without their chunk), ``results`` (JSON: output kind -> path), ``processed_at``, ``created_at``
(when its first chunk was recorded), ``attempts``, ``error`` and ``monitor_generation`` (the
generation the monitoring's re-run request set: ``state.monitored``). Every block id is in
``Keys.block_index()`` (scored by start); a block whose generation is ahead of its done
generation is also in ``Keys.block_pending()`` (scored by its end), which the processor walks
to find work.

Recording a chunk is one Lua script and is idempotent: recording the same chunk (same path)
again changes nothing, so a redelivered message never re-runs a block. A chunk recorded after
its block was processed (a late chunk) bumps the generation and puts the block back on the
pending list: it is re-run as version n+1, which supersedes version n. A run's commit is
queued in the same transaction as the fencing-token check (``Leases.run_fenced``), and takes
the block off the pending list only if no newer chunk arrived meanwhile.

Readers (``dsa110ctl blocks``, housekeeping) use :meth:`Blocks.block`, :meth:`Blocks.blocks`,
:meth:`Blocks.chunk` and :meth:`Blocks.chunks`.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from dsa110d.errors import StateError
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.durability import confirm
from dsa110d.state.keys import Keys


class BlockState(enum.StrEnum):
    PENDING = "pending"
    """Chunks recorded, not yet processed (or a late chunk arrived since)."""
    PROCESSED = "processed"
    """A run has committed (``version`` >= 1)."""
    FAILED = "failed"
    """The last run failed ``retry.max_attempts`` times; a new chunk makes it pending again."""


@dataclass(frozen=True)
class ChunkRecord:
    """One converted chunk as stored."""

    chunk_id: str
    set_id: str
    start: float
    end: float
    dec_rad: float
    path: str
    recorded_at: float = 0.0


@dataclass(frozen=True)
class BlockSpan:
    """A block a chunk belongs to: its id and span (Unix s), from ``science.blocks``."""

    block_id: str
    start: float
    end: float


@dataclass(frozen=True)
class BlockRecord:
    """One block as stored."""

    block_id: str
    start: float
    end: float
    state: BlockState
    version: int
    generation: int
    done_generation: int
    chunks: tuple[str, ...] = ()
    missing_slots: tuple[int, ...] = ()
    results: dict[str, str] = field(default_factory=dict)
    qa: dict[str, Any] = field(default_factory=dict)
    """Stage -> its summary from the last committed run (the flag stage's flag fraction...)."""
    processed_at: float = 0.0
    attempts: int = 0
    error: str = ""
    created_at: float = 0.0
    """When the block's first chunk was recorded (Unix s)."""
    monitor_generation: int = 0
    """The generation a monitoring re-run request set (``state.monitored``: a new source to
    measure here); equal to ``generation`` while nothing else (a new chunk) has asked since."""

    @property
    def rerun_for_monitoring(self) -> bool:
        """The last request for a run was the monitoring's, on a block run before: its data
        are those of its last run, only the monitored list has grown."""
        return self.stale and self.version > 0 and self.monitor_generation == self.generation

    @property
    def stale(self) -> bool:
        """Chunks have been recorded since the last committed run (or there was none)."""
        return self.generation > self.done_generation


class Blocks:
    """Chunk and block records on one server and namespace (see the module docstring)."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target
        self._record_chunk = lua.script(redis, "blocks_record_chunk")
        self._fail_run = lua.script(redis, "blocks_fail_run")
        self._commit_run = lua.script(redis, "blocks_commit_run")

    # ------------------------------------------------------------------ the processor
    async def record_chunk(
        self, chunk: ChunkRecord, blocks: Sequence[BlockSpan], now: float | None = None
    ) -> bool:
        """Record a converted chunk and mark its blocks pending; False if already recorded."""
        now = time.time() if now is None else now
        keys = [
            self.keys.chunk_record(chunk.chunk_id),
            self.keys.chunk_index(),
            self.keys.block_index(),
            self.keys.block_pending(),
            *(self.keys.block_record(b.block_id) for b in blocks),
        ]
        args: list[Any] = [
            chunk.chunk_id,
            chunk.set_id,
            repr(chunk.start),
            repr(chunk.end),
            repr(chunk.dec_rad),
            chunk.path,
            repr(now),
        ]
        for b in blocks:
            args += [b.block_id, repr(b.start), repr(b.end)]
        with translate_errors(self.target):
            new = bool(await self._record_chunk(keys=keys, args=args))
        await confirm(self.redis, self.keys, self.target, f"chunk {chunk.chunk_id}")
        return new

    def stage_commit(
        self,
        pipe: Pipeline,
        block_id: str,
        version: int,
        generation: int,
        chunks: Sequence[str],
        missing_slots: Sequence[int],
        results: dict[str, str],
        now: float | None = None,
        qa: dict[str, Any] | None = None,
    ) -> None:
        """Queue a run's commit on a transaction (for ``Leases.run_fenced``): the block is
        processed at ``version``, and off the pending list unless a newer chunk came; ``qa``:
        each stage's summary, kept with the record."""
        lua.queue(
            pipe,
            self._commit_run,
            [self.keys.block_record(block_id), self.keys.block_pending()],
            [
                block_id,
                str(version),
                str(generation),
                json.dumps(list(chunks)),
                json.dumps(list(missing_slots)),
                json.dumps(results, sort_keys=True),
                repr(time.time() if now is None else now),
                json.dumps(qa or {}, sort_keys=True, allow_nan=False, default=str),
            ],
        )

    async def record_failure(self, block_id: str, error: str, max_attempts: int) -> int:
        """Count a failed run; at ``max_attempts`` the block becomes failed. Returns attempts."""
        keys = [self.keys.block_record(block_id), self.keys.block_pending()]
        with translate_errors(self.target):
            return int(
                await self._fail_run(
                    keys=keys, args=[block_id, error, max_attempts, repr(time.time())]
                )
            )

    async def pending(self, until: float | None = None, limit: int = 100) -> list[str]:
        """Ids of blocks with unprocessed chunks, earliest end first (ending by ``until``)."""
        high: float | str = "+inf" if until is None else until
        with translate_errors(self.target):
            ids = await self.redis.zrangebyscore(
                self.keys.block_pending(), "-inf", high, start=0, num=limit
            )
        return [str(i) for i in ids]

    async def forget_pending(self, block_id: str) -> None:
        """Take an id off the pending list whose record is gone (housekeeping pruned it)."""
        with translate_errors(self.target):
            await self.redis.zrem(self.keys.block_pending(), block_id)

    async def pending_count(self) -> int:
        with translate_errors(self.target):
            return int(await self.redis.zcard(self.keys.block_pending()))

    # ------------------------------------------------------------------ readers
    async def chunk(self, chunk_id: str) -> ChunkRecord | None:
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.chunk_record(chunk_id))  # type: ignore[misc]
        return _chunk(chunk_id, raw) if raw else None

    async def chunks(
        self, start: float = float("-inf"), end: float = float("inf")
    ) -> list[ChunkRecord]:
        """Chunks whose start lies in [start, end], in time order."""
        with translate_errors(self.target):
            ids = [
                str(i) for i in await self.redis.zrangebyscore(self.keys.chunk_index(), start, end)
            ]
            raws = await self._hgetall([self.keys.chunk_record(i) for i in ids])
        return [_chunk(i, r) for i, r in zip(ids, raws, strict=True) if r]

    async def block(self, block_id: str) -> BlockRecord | None:
        with translate_errors(self.target):
            raw = await self.redis.hgetall(self.keys.block_record(block_id))  # type: ignore[misc]
        return _block(block_id, raw) if raw else None

    async def blocks(
        self, state: BlockState | str | None = None, limit: int = 0
    ) -> list[BlockRecord]:
        """Blocks by start time (oldest first), optionally only those in ``state``; at most
        ``limit`` (0: all) of the newest matching ones."""
        wanted = BlockState(state) if state is not None else None
        first = -limit if limit and wanted is None else 0  # the newest only, when they suffice
        with translate_errors(self.target):
            ids = [str(i) for i in await self.redis.zrange(self.keys.block_index(), first, -1)]
            raws = await self._hgetall([self.keys.block_record(i) for i in ids])
        records = [_block(i, r) for i, r in zip(ids, raws, strict=True) if r]
        if wanted is not None:
            records = [r for r in records if r.state is wanted]
        return records[-limit:] if limit else records

    async def _hgetall(self, keys: list[str]) -> list[dict[str, str]]:
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            return list(await pipe.execute())


def _chunk(chunk_id: str, raw: dict[str, str]) -> ChunkRecord:
    try:
        return ChunkRecord(
            chunk_id=chunk_id,
            set_id=raw.get("set_id", chunk_id),
            start=float(raw["start"]),
            end=float(raw["end"]),
            dec_rad=float(raw["dec"]),
            path=raw["path"],
            recorded_at=float(raw.get("recorded_at", 0) or 0),
        )
    except (KeyError, ValueError) as exc:
        raise StateError(f"chunk record {chunk_id}: malformed ({exc})") from None


def _block(block_id: str, raw: dict[str, str]) -> BlockRecord:
    try:
        return BlockRecord(
            block_id=block_id,
            start=float(raw["start"]),
            end=float(raw["end"]),
            state=BlockState(raw["state"]),
            version=int(raw.get("version", 0)),
            generation=int(raw.get("generation", 0)),
            done_generation=int(raw.get("done_generation", 0)),
            chunks=tuple(json.loads(raw.get("chunks") or "[]")),
            missing_slots=tuple(int(s) for s in json.loads(raw.get("missing") or "[]")),
            results=dict(json.loads(raw.get("results") or "{}")),
            qa=dict(json.loads(raw.get("qa") or "{}")),
            processed_at=float(raw.get("processed_at") or 0),
            attempts=int(raw.get("attempts") or 0),
            error=raw.get("error", ""),
            created_at=float(raw.get("created_at") or 0),
            monitor_generation=int(raw.get("monitor_generation") or 0),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StateError(f"block record {block_id}: malformed ({exc})") from None
