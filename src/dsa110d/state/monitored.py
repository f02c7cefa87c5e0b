"""The monitored list: new sources the blind search found, measured from then on.

A new source (``science.imaging``: unmatched, significant, first detected in a block) joins
the list once, in ``Keys.monitored()`` (candidate id -> JSON record: position, first block,
the earlier blocks that covered it). Registering it and asking for the re-run of those
earlier blocks (their generation bumped, back on the pending list, as a late chunk does) is
one script (``monitored_register.lua``): however many processors publish a block naming the
same candidate, exactly one registration succeeds and the earlier blocks re-run once. Every
block run after that reads the list and forced photometry measures its sources beside the
catalog's (TraP's monitoring list).

Registration is durable: a block run whose image stage published a candidates table records
it as pending (``Keys.monitoring_pending()``, block id -> the table's path) in the same fenced
transaction as its commit (:meth:`MonitoredSources.stage_pending`); the processor registers
the table's new sources after the commit and, when that fails (the server gone, a refused
command), again on every pass until it succeeds (:meth:`MonitoredSources.settle` then removes
the entry). Registering twice is harmless (one ``HSETNX`` per candidate), so the sources are
registered, and their blocks re-run, exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redis.asyncio.client import Pipeline

from dsa110d.errors import describe
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.durability import confirm
from dsa110d.state.keys import Keys

T = TypeVar("T")


@dataclass(frozen=True)
class Unreadable:
    """A monitored entry that could not be decoded: its candidate id (the hash field) and
    why (one printable line)."""

    candidate_id: str
    reason: str


@dataclass(frozen=True)
class Decoded(Generic[T]):
    """The monitored list, each entry decoded on its own: the readable ones in candidate-id
    order, and the damaged ones set aside by id."""

    sources: list[T]
    unreadable: list[Unreadable]


class MonitoredSources:
    """Register and read the monitored new sources."""

    def __init__(self, redis: Redis, keys: Keys, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target
        self._register = lua.script(redis, "monitored_register")
        self._settle = lua.script(redis, "monitored_settle")

    async def register(self, record: dict[str, Any], rerun_blocks: Sequence[str] = ()) -> bool:
        """Add ``record`` (its ``candidate_id``) unless already monitored, and then ask for
        ``rerun_blocks`` to run again; True when this call added it."""
        cid = str(record["candidate_id"])
        keys = [
            self.keys.monitored(),
            self.keys.block_pending(),
            *(self.keys.block_record(b) for b in rerun_blocks),
        ]
        args = [cid, json.dumps(record, sort_keys=True, allow_nan=False), *rerun_blocks]
        with translate_errors(self.target):
            added = bool(await self._register(keys=keys, args=args))
        if added:
            await confirm(self.redis, self.keys, self.target, f"monitored source {cid}")
        return added

    def stage_pending(self, pipe: Pipeline, block_id: str, candidates_path: str) -> None:
        """Queue, on the block's fenced commit, that its run's candidates table is still to be
        registered (a newer run of the block replaces the older's entry)."""
        pipe.hset(self.keys.monitoring_pending(), block_id, candidates_path)

    async def pending(self) -> dict[str, str]:
        """The registrations still to do: block id -> candidates table path."""
        with translate_errors(self.target):
            raw: dict[str, str] = await self.redis.hgetall(self.keys.monitoring_pending())  # type: ignore[misc]
        return raw

    async def settle(self, block_id: str, candidates_path: str) -> bool:
        """The block's registration of ``candidates_path`` is done: remove it from the pending
        ones unless a newer run's table replaced it; True when removed."""
        keys = [self.keys.monitoring_pending()]
        with translate_errors(self.target):
            done = bool(await self._settle(keys=keys, args=[block_id, candidates_path]))
        await confirm(self.redis, self.keys, self.target, f"monitoring of block {block_id}")
        return done

    async def entries(self) -> dict[str, str]:
        """Every monitored source's stored JSON, by candidate id, undecoded."""
        with translate_errors(self.target):
            raw: dict[str, str] = await self.redis.hgetall(self.keys.monitored())  # type: ignore[misc]
        return raw

    async def decoded(self, decode: Callable[[dict[str, Any]], T]) -> Decoded[T]:
        """Every monitored source's record through ``decode``, in candidate-id order. Each
        entry is its own fault boundary: one that is not a JSON object, or that ``decode``
        rejects (``ValueError``, ``KeyError``, ``TypeError``), is set aside by its id with the
        reason, and the rest are still read (one damaged hash field must not hide them all)."""
        sources: list[T] = []
        unreadable: list[Unreadable] = []
        for candidate_id, raw in sorted((await self.entries()).items()):
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise TypeError(f"a JSON {type(record).__name__}, not an object")
                sources.append(decode(record))
            except (ValueError, KeyError, TypeError) as exc:
                unreadable.append(Unreadable(candidate_id, describe(exc)))
        return Decoded(sources, unreadable)
