"""The watcher's set side: probed files recorded on their sets, complete sets announced
exactly once, faults recorded once, open sets checked (re-published, timed out), and converted
sets' files moved (``post_handle: move``). See :mod:`dsa110d.services.watcher`.

:class:`SetAnnouncer` needs no directory: :class:`~dsa110d.services.watcher_intake.HDF5EventHandler`
adds the intake (scans, events, settling, probing) on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import structlog

from dsa110d.config import Config
from dsa110d.contracts import PROCESSOR_GROUP, SetAnnounced
from dsa110d.errors import describe, is_service_fault, sole_error
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.science.hdf5 import ingest
from dsa110d.science.hdf5.ingest import FileFault, GoodSubband, ProbeOutcome
from dsa110d.science.hdf5.subbands import parse_subband_name
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.sets import ErrorKind, NewFile, SetError, SetRecord, Sets, SetState
from dsa110d.state.streams import ReliableStream

CONCURRENCY = 32
"""Sets announced (or checked against their neighbours) at once."""

T = TypeVar("T")


async def _concurrently(job: Callable[[T], Awaitable[Any]], items: Sequence[T]) -> None:
    """``job`` for each item, up to CONCURRENCY at once: round trips overlap, and the server
    batches their writes (one fsync for many under ``appendfsync always``)."""
    if len(items) <= 1:
        for item in items:
            await job(item)
        return
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def one(item: T) -> None:
        async with limiter:
            await job(item)

    with sole_error():
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)


class SetAnnouncer:
    """Probe outcomes -> set records, faults and HDF5_PROCESSING announcements."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        log: structlog.stdlib.BoundLogger | None = None,
        service: str = "watcher",
    ) -> None:
        self.config = config
        self.cfg = config.services.hdf5_watcher
        self.keys = Keys(config.redis.namespace)
        self.sets = Sets(redis, self.keys)
        self.stream = ReliableStream(
            redis, self.keys, MessageType.HDF5_PROCESSING, PROCESSOR_GROUP, config.streams,
            config.retry,
        )  # fmt: skip
        self.log = log or structlog.get_logger("dsa110d.services.watcher")
        self.producer = Producer.here(service)
        self.announced = 0
        self.rejected = 0

    # ------------------------------------------------------------------ recording
    async def _record(self, outcomes: Sequence[ProbeOutcome]) -> None:
        """Record probed files on their sets (idempotent), faults included; announce the sets
        they complete."""
        files = [
            NewFile(
                o.set_id, o.subband, o.resolved, o.name_time, o.time0_jd, o.integration_s,
                o.dec_rad,
            )
            for o in outcomes
            if isinstance(o, GoodSubband)
        ]  # fmt: skip
        results = await self.sets.add_files(files, self.cfg.expected_subbands)
        complete: list[str] = []
        created = [f for f, r in zip(files, results, strict=True) if r.created]
        await _concurrently(self._check_neighbours, created)
        for f, r in zip(files, results, strict=True):
            if r.outcome == "duplicate":
                reason = (
                    f"{f.path}: a second file for sb{f.subband:02d} of set {f.set_id} "
                    f"(keeping {r.holder})"
                )
                await self._fault(f.set_id, ErrorKind.DUPLICATE, reason, f.path, f.name_time)
            elif r.outcome == "late":
                reason = (
                    f"{f.path}: sb{f.subband:02d} arrived after set {f.set_id} was announced "
                    f"(state {r.state.value}); not added"
                )
                await self._fault(f.set_id, ErrorKind.LATE, reason, f.path, f.name_time)
            if r.outcome == "added" and r.state is SetState.COMPLETE:
                complete.append(f.set_id)
        for o in outcomes:
            if isinstance(o, FileFault) and o.kind != ingest.GONE:
                await self._record_bad(o)
        await _concurrently(self._announce_whole, list(dict.fromkeys(complete)))

    async def _announce_whole(self, set_id: str) -> None:
        await self.announce(set_id, partial=False)

    async def _record_bad(self, outcome: FileFault) -> None:
        """A file that is not a usable subband: on the set nearest its name timestamp."""
        path = outcome.path
        name = parse_subband_name(path)
        name_time = name.timestamp.timestamp() if name else time.time()
        near = await self.sets.neighbours(name_time, self.cfg.group_tolerance_sec)
        set_id = ingest.nearest_set(name_time, near, self.cfg.group_tolerance_sec)
        set_id = set_id or ingest.by_name_set_id(name_time)
        await self._fault(set_id, ErrorKind(outcome.kind), outcome.reason, path, name_time)

    async def _check_neighbours(self, f: NewFile) -> None:
        """A new timed set: fold in by-name sets near it; record times that disagree."""
        tolerance = self.cfg.group_tolerance_sec
        for other_id, _ in await self.sets.neighbours(f.name_time, tolerance):
            if other_id == f.set_id:
                continue
            if other_id.endswith(ingest.BY_NAME_SUFFIX):
                await self.sets.merge(other_id, f.set_id)
                continue
            other = await self.sets.get(other_id)
            if other is None:  # pruned by housekeeping
                await self.sets.forget(other_id)
                continue
            if other.time0_jd is None or f.time0_jd is None:
                continue
            reason = ingest.disagreement(
                f.path, f.time0_jd, other_id, other.time0_jd, list(other.files.values()), tolerance
            )
            if reason:  # on both sets, once per pair (whichever of them was seen first)
                pair = ":".join(sorted((f.set_id, other_id)))
                for set_id in (f.set_id, other_id):
                    await self._fault(
                        set_id, ErrorKind.TIME_DISAGREEMENT, reason, f.path, f.name_time, pair
                    )

    async def _fault(
        self,
        set_id: str,
        kind: ErrorKind,
        reason: str,
        path: str,
        name_time: float,
        key: str = "",
    ) -> None:
        """Record a fault on a set and log it, once per (set, kind, path or ``key``)."""
        error = SetError(kind.value, reason, path, time.time())
        recorded = await self.sets.add_error(
            set_id,
            error,
            name_time=name_time,
            expected=self.cfg.expected_subbands,
            key=f"{kind.value}:{key}" if key else "",
        )
        if recorded:
            self.rejected += 1
            self.log.warning("subband_fault", set_id=set_id, kind=kind.value, reason=reason)

    # ------------------------------------------------------------------ announcing
    async def announce(self, set_id: str, partial: bool) -> bool:
        """Claim the set (one caller wins) and publish its HDF5_PROCESSING message."""
        record = await self.sets.claim(set_id, partial)
        return record is not None and await self._publish(record)

    async def publish(self, set_id: str) -> bool:
        """Publish a queued set's message (idempotent by set id) and mark it sent."""
        record = await self.sets.get(set_id)
        if record is None or record.state is not SetState.QUEUED:
            return False
        return await self._publish(record)

    async def _publish(self, record: SetRecord) -> bool:
        try:
            return await self._send(record)
        except Exception as exc:  # the set's fault (a payload JSON cannot carry...)
            if is_service_fault(exc):
                raise  # the server's: the set stays queued and is re-published later
            await self._unannounceable(record.set_id, exc)
            return False

    async def _send(self, record: SetRecord) -> bool:
        set_id = record.set_id
        announced = SetAnnounced.of(
            set_id,
            record.files,
            record.time0_jd,
            record.dec_rad,
            record.expected,
            record.partial,
        )
        message = new_message(MessageType.HDF5_PROCESSING, announced.to_payload(), self.producer)
        entry = await self.stream.publish(message, dedup_key=set_id)
        await self.sets.sent(set_id, message.id if entry else None)
        if entry is not None:
            self.announced += 1
            self.log.info(
                "set_announced",
                set_id=set_id,
                subbands=len(record.files),
                partial=record.partial,
                entry=entry,
            )
        return entry is not None

    async def check_open_sets(self, now: float | None = None) -> None:
        """Announce complete sets, re-publish interrupted ones, apply on_incomplete.

        Each open set is a unit of work: whatever its check raises (a service fault aside)
        fails that set with the reason, and the other sets are still checked."""
        now = time.time() if now is None else now
        for set_id, first_seen in await self.sets.open_sets():
            try:
                await self._check_open(set_id, first_seen, now)
            except Exception as exc:
                if is_service_fault(exc):
                    raise
                await self._unannounceable(set_id, exc)

    async def _check_open(self, set_id: str, first_seen: float, now: float) -> None:
        record = await self.sets.get(set_id)
        if record is None:  # pruned by housekeeping
            await self.sets.forget(set_id)
        elif record.state is SetState.QUEUED:
            await self.publish(set_id)
        elif record.state is SetState.COMPLETE:
            await self.announce(set_id, partial=False)
        elif record.state is SetState.COLLECTING:
            await self._timeout(set_id, record.missing, len(record.files), now - first_seen)

    async def _unannounceable(self, set_id: str, exc: Exception) -> None:
        """A set whose announcement cannot be built or published: failed with the reason
        (off the open list), never left claimed and retried on every pass."""
        reason = f"set {set_id}: cannot be announced: {describe(exc)}"
        error = SetError(ErrorKind.UNANNOUNCEABLE.value, reason, "", time.time())
        if not await self.sets.mark(set_id, SetState.FAILED, error):
            await self.sets.forget(set_id)  # no record to fail: at least stop walking it
        self.log.error("set_failed", set_id=set_id, reason=reason)

    async def _timeout(self, set_id: str, missing: list[int], n: int, age: float) -> None:
        action = ingest.incomplete_action(
            self.cfg.on_incomplete, age, self.cfg.processing_timeout_sec, n
        )
        if action == "none":
            return
        reason = ingest.incomplete_reason(set_id, missing, age)
        error = SetError(ErrorKind.INCOMPLETE.value, reason, "", time.time())
        if action == "wait":
            if await self.sets.mark_incomplete(set_id, error):
                self.log.warning("set_incomplete", set_id=set_id, reason=reason, action="wait")
        elif action == "partial":
            if await self.announce(set_id, partial=True):
                self.log.warning("set_incomplete", set_id=set_id, reason=reason, action="partial")
        elif await self.sets.mark(
            set_id, SetState.FAILED, error, from_states=(SetState.COLLECTING, SetState.INCOMPLETE)
        ):  # not from complete: the last subband may have landed since the timeout check
            self.log.warning("set_incomplete", set_id=set_id, reason=reason, action="fail")

    # ------------------------------------------------------------------ post_handle
    async def move_converted(self) -> int:
        """post_handle=move: move converted sets' files to processed_dir."""
        if self.cfg.post_handle != "move":
            return 0
        moved = 0
        for set_id in await self.sets.pop_converted():
            record = await self.sets.get(set_id)
            if record is None:
                continue
            dest = str(self.config.paths.processed_dir)
            paths = list(record.files.values())
            try:
                done = await anyio.to_thread.run_sync(ingest.move_files, paths, dest)
            except OSError as exc:  # processed_dir unwritable, disk full: keep it, try again
                await self.sets.requeue_converted(set_id)
                self.log.error("set_move_failed", set_id=set_id, to=dest, reason=str(exc))
                continue
            await self.sets.note(set_id, moved_to=dest)
            moved += len(done)
            self.log.info("set_moved", set_id=set_id, files=len(done), to=dest)
        return moved
