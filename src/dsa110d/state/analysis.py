"""When the next variability analysis run is due, shared by every analyzer host.

Block announcements are *noted*, not queued: the analyzer's MS_PROCESSING handler adds the
block id to one Redis set (``Keys.analysis_pending``) with the first and last time a block was
noted (``Keys.analysis_times``) and acks the message. A run reads every photometry file
anyway, so a burst of any length becomes one run once the notes pause for the debounce time
(or, under a steady stream, ``DEBOUNCE_CAP`` debounces after the first note). Because the
notes live in Redis, a run is due on whichever host looks next, even if the host that took
the messages died.

A run takes a :class:`Snapshot` of the pending set, and :meth:`AnalysisQueue.finish` removes
exactly those ids (blocks noted meanwhile keep the next run due), clears a taken full-recompute
request, and records the run in ``Keys.analysis_last_run``; runs are also due every
``analysis_interval_hours`` after the last one, and a failed run is retried after
:func:`retry_delay`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dsa110d.contracts import RunStatus
from dsa110d.state import lua
from dsa110d.state.connection import Redis, translate_errors
from dsa110d.state.keys import Keys

DEBOUNCE_CAP = 10.0
"""A steady stream of notes still gives a run this many debounce times after the first."""
FAILED_RETRY_SEC = 60.0
"""A failed or timed-out run is retried after this (at most the interval, at least the debounce)."""


@dataclass(frozen=True)
class Snapshot:
    """What a run took: the pending block ids and whether a full recompute was asked for."""

    blocks: tuple[str, ...]
    full: bool


@dataclass(frozen=True)
class Outlook:
    """What the queue looks like now, for deciding when to run."""

    pending: int
    first_noted: float | None
    last_noted: float | None
    full: bool
    last_finished: float | None
    last_status: str | None


def retry_delay(interval_sec: float, debounce_sec: float) -> float:
    return min(interval_sec, max(debounce_sec, FAILED_RETRY_SEC))


def seconds_until_due(
    outlook: Outlook, now: float, *, debounce_sec: float, interval_sec: float
) -> float:
    """0 when a run is due now, else how long until it is (inf: nothing to do)."""
    waits = [math.inf]
    last = outlook.last_finished
    if last is None:
        waits.append(0.0)
    else:
        waits.append(last + interval_sec - now)
    if outlook.pending or outlook.full:
        first = outlook.first_noted if outlook.first_noted is not None else now
        noted = outlook.last_noted if outlook.last_noted is not None else now
        due = min(noted + debounce_sec, first + DEBOUNCE_CAP * debounce_sec)
        if outlook.full:
            due = now
        if last is not None and outlook.last_status not in (None, RunStatus.OK):
            due = max(due, last + retry_delay(interval_sec, debounce_sec))
        waits.append(due - now)
    return max(0.0, min(waits))


class AnalysisQueue:
    """Notes, snapshots and run records of the variability analysis (module docstring)."""

    def __init__(self, redis: Redis, keys: Keys, *, target: str = "the state server") -> None:
        self.redis = redis
        self.keys = keys
        self.target = target
        self._finish = lua.script(redis, "analysis_finish")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with translate_errors(self.target):
            yield

    async def note_blocks(self, block_ids: Iterable[str], now: float) -> None:
        """Remember that these blocks changed (idempotent: a set)."""
        ids = list(block_ids)
        if not ids:
            return
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.sadd(self.keys.analysis_pending(), *ids)
            pipe.hsetnx(self.keys.analysis_times(), "first", repr(now))
            pipe.hset(self.keys.analysis_times(), "last", repr(now))
            await pipe.execute()

    async def request_full(self, now: float) -> None:
        """Ask for a full recompute at the next run (on any host)."""
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.keys.analysis_full(), repr(now))
            pipe.hsetnx(self.keys.analysis_times(), "first", repr(now))
            pipe.hset(self.keys.analysis_times(), "last", repr(now))
            await pipe.execute()

    async def outlook(self) -> Outlook:
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            pipe.scard(self.keys.analysis_pending())
            pipe.hmget(self.keys.analysis_times(), ["first", "last"])
            pipe.exists(self.keys.analysis_full())
            pipe.get(self.keys.analysis_last_run())
            pending, (first, last), full, last_run = await pipe.execute()
        record = _record(last_run)
        finished = record.get("finished_at")
        return Outlook(
            pending=int(pending),
            first_noted=_float(first),
            last_noted=_float(last),
            full=bool(full),
            last_finished=_float(finished),
            last_status=None if record.get("status") is None else str(record["status"]),
        )

    async def snapshot(self) -> Snapshot:
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            pipe.smembers(self.keys.analysis_pending())
            pipe.exists(self.keys.analysis_full())
            members, full = await pipe.execute()
        return Snapshot(tuple(sorted(str(m) for m in members)), bool(full))

    async def finish(self, taken: Snapshot | None, record: dict[str, Any], now: float) -> int:
        """Record a run; on success (``taken`` given) forget what it took. Returns still pending."""
        blocks = list(taken.blocks) if taken is not None else []
        full = "1" if taken is not None and taken.full else "0"
        with self._guard():
            left = await self._finish(
                keys=[
                    self.keys.analysis_pending(),
                    self.keys.analysis_times(),
                    self.keys.analysis_full(),
                    self.keys.analysis_last_run(),
                ],
                args=[repr(now), json.dumps(record), full, *blocks],
            )
        return int(left)

    async def last_run(self) -> dict[str, Any] | None:
        with self._guard():
            raw = await self.redis.get(self.keys.analysis_last_run())
        return _record(raw) or None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _record(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}  # a corrupt record must not stop the analysis: treat it as never run
    return doc if isinstance(doc, dict) else {}
