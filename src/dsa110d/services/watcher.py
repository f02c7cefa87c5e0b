"""The HDF5 watcher: subband files in ``paths.incoming_dir`` -> set records -> exactly one
HDF5_PROCESSING message per complete set.

:class:`HDF5EventHandler` does the work and is usable without the daemon (tests, benchmark);
:class:`HDF5WatcherService` runs it as the ``watcher`` service:

* **Where paths come from**: a full scan at start-up (before READY), inotify events from
  watchfiles (created, moved-to, modified; or its polling mode with ``force_polling``), a
  rescan once the watch is armed (files that landed during the start-up scan), and a
  reconciliation scan every ``poll_interval_sec``.
* **When a file counts**: its name is a subband name matching ``file_pattern`` (not
  ``_incomplete``, not an rsync temporary), two looks ``stability_interval_sec`` apart see the
  same size and mtime, it resolves inside the watched directory, and the probe
  (:func:`~dsa110d.science.hdf5.probe.probe_subband`, run off the event loop) accepts it.
* **Probing and recording**: a batch of settled files (sorted by name, so by set) is probed
  in parts, a set's worth at a time in a burst and BACKLOG_CHUNK files at a time in a backlog,
  ahead of the recording: while one part's sets are recorded and announced (which mostly waits
  on the server's fsyncs) the next is probed; the recording takes every part probed by then
  in one go, one script call per set. A rescan stats each known file once and probes only
  files whose size or mtime changed; a restart probes none it knew: outcomes are cached in
  the state server by (path, size, mtime, inode) (:class:`~dsa110d.state.probes.ProbeCache`).
  The service probes in a long-lived process of its own, and a backlog in up to
  PROBE_WORKERS (:func:`isolated_prober`: a crash or hang of libhdf5 on a hostile file kills
  that process, which is replaced, and the file is recorded as faulty); :func:`probe_in_threads`
  (tests, benchmarks) and :func:`pooled_prober` probe in the daemon's process.
* **Fault boundaries**: each file is one unit of work (whatever its probe raises becomes its
  ``bad_file`` fault, :func:`ingest.probe_files`), and so is each open set in the periodic
  check (a set whose announcement cannot be built or published is failed with the reason,
  not left claimed); only a fault of the service itself (the state server) leaves them.
* **Grouping**: a good file joins the set named by its ``time_array[0]``; a bad one is
  recorded on the set nearest its name timestamp within ``group_tolerance_sec``.
* **Exactly once**: :meth:`Sets.claim <dsa110d.state.sets.Sets.claim>` lets one caller move
  a set to ``queued``; that caller publishes with ``dedup_key=set_id`` and then marks it sent.
  A crash in between leaves the set queued on the open list, and the next reconciliation (by
  any watcher) re-publishes, which the dedup key makes a no-op if the first publish landed.
* **Faults** (bad files, duplicates, late subbands, disagreeing times, timeouts) are recorded
  on the set once (the record remembers each fault of each path) and logged when recorded.

Input files are never opened for writing; with ``post_handle: move`` the files of sets the
processor marked converted are moved to ``paths.processed_dir``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import structlog
from watchfiles import Change, awatch

from dsa110d.config import Config
from dsa110d.contracts import PROCESSOR_GROUP, SetAnnounced
from dsa110d.errors import (
    ConfigError,
    DSA110Error,
    InputFileError,
    describe,
    is_service_fault,
    sole_error,
)
from dsa110d.messages import MessageType, Producer, new_message
from dsa110d.resilience import Backoff, RetryPolicy
from dsa110d.science.hdf5 import ingest
from dsa110d.science.hdf5.subbands import ignore_reason, parse_subband_name
from dsa110d.services import dirwatch
from dsa110d.services.base import Health, HealthReport, Service, ServiceContext, register_service
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.probes import Identity, ProbeCache
from dsa110d.state.sets import ErrorKind, NewFile, SetError, SetRecord, Sets, SetState
from dsa110d.state.streams import ReliableStream
from dsa110d.workers import DEATHS_DEGRADED, WorkerPool

PROBE_CHUNK = 64
"""Files probed per thread hop (~2 ms each on tiny files): the loop stays responsive."""
BACKLOG_CHUNK = 256
"""Files probed and recorded at a time once a batch holds more than one chunk (a backlog):
the probe of the next chunk overlaps the recording of this one, and sets go out as they
complete rather than after the whole backlog is probed."""
PARTS_AHEAD = 8
"""Parts probed ahead of the recording at most (a burst's sets; bounded memory)."""
PROBE_WORKERS = os.cpu_count() or 1
"""Probe processes of the watcher service at most: one long-lived (a burst's parts, a set's
worth each, go to it: no spawn on the latency path) and, for a backlog (BACKLOG_CHUNK files
a part), the others, spawned for it and retired PROBE_IDLE_SEC after it."""
PROBE_IDLE_SEC = 60.0
PROBE_MODULES = ("dsa110d.science.hdf5.ingest",)
"""Imported once when a probe process starts (h5py, numpy), not on its first job."""
PROBE_JOB_BASE_SEC = 30.0
PROBE_JOB_PER_FILE_SEC = 1.0
"""A probe job's deadline: base + per file (a tiny file takes ~2 ms, a real one ~10 ms).
Past it the worker is killed: a file that hangs libhdf5 is a fault like one that crashes it."""
WORKER_MIN_FILES = 128
"""Batches this large may go to a worker process (pooled_prober)."""
WATCH_DEBOUNCE_MS = 200
WATCH_STEP_MS = 20
"""watchfiles batching: yield after 20 ms without new events, at most 200 ms after the first."""
RESCAN_CAP_SEC = 5.0
"""After a fault the rescan is retried with backoff (retry.base_delay_sec doubling) up to this
apart: a server back from an outage is noticed within it, as by the stream consumers."""
TIMEOUT_CHECKS_PER_TIMEOUT = 4
"""Open sets are checked this often per processing_timeout_sec (and at least every poll)."""

CONCURRENCY = 32
"""Sets announced (or checked against their neighbours) at once."""

T = TypeVar("T")
Prober = Callable[[list[str], str], Awaitable[list[dict[str, Any]]]]
Worker = Callable[..., Awaitable[Any]]


async def probe_in_threads(paths: list[str], root: str) -> list[dict[str, Any]]:
    """Probe in a thread, a chunk at a time (blocking file I/O off the event loop)."""
    found: list[dict[str, Any]] = []
    for i in range(0, len(paths), PROBE_CHUNK):
        found += await anyio.to_thread.run_sync(
            ingest.probe_files, paths[i : i + PROBE_CHUNK], root
        )
    return found


def pooled_prober(worker: Worker, lanes: int) -> Prober:
    """A prober that sends a batch of at least WORKER_MIN_FILES to one of ``lanes`` worker
    processes when one is free, else probes it in a thread. The handler keeps up to
    ``lanes + 1`` batches in flight (its ``probe_lanes``), so all lanes stay busy."""
    free = [lanes]

    async def probe(paths: list[str], root: str) -> list[dict[str, Any]]:
        if len(paths) < WORKER_MIN_FILES or free[0] < 1:
            return await probe_in_threads(paths, root)
        free[0] -= 1
        try:
            found: list[dict[str, Any]] = await worker(ingest.probe_files, paths, root)
            return found
        finally:
            free[0] += 1

    return probe


def isolated_prober(
    pool: WorkerPool,
    job: Callable[..., Any] = ingest.probe_files,
    base_sec: float = PROBE_JOB_BASE_SEC,
    per_file_sec: float = PROBE_JOB_PER_FILE_SEC,
) -> Prober:
    """A prober that parses every file in ``pool``'s worker processes (untrusted HDF5 may
    crash or hang libhdf5: that kills a worker, never the daemon), a part per job.

    A job that fails as a whole (the worker died, hung past its deadline, or raised) is
    retried a file per job, so only the file at fault is recorded, with the reason: a good
    file in the same part is unharmed. ``job`` is what the worker runs (a module-level
    function like :func:`ingest.probe_files`); a job's deadline is ``base_sec`` plus
    ``per_file_sec`` a file."""

    async def probe(paths: list[str], root: str) -> list[dict[str, Any]]:
        deadline = base_sec + per_file_sec * len(paths)
        try:
            with anyio.fail_after(deadline):  # cancelling the job kills its worker
                found: list[dict[str, Any]] = await pool.run(job, paths, root)
            return found
        except TimeoutError:
            failure = f"the probe process took more than {deadline:g} s (killed)"
        except Exception as exc:
            if is_service_fault(exc):
                raise
            failure = f"the probe process failed on it: {describe(exc)}"
        if len(paths) == 1:
            return [ingest.file_fault(paths[0], f"{paths[0]}: {failure}")]
        found = []
        for path in paths:  # which file was it? one job each
            found += await probe([path], root)
        return found

    return probe


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


def _identity(look: ingest.Look) -> Identity:
    return (look.size, look.mtime_ns, look.inode)


class _Probing:
    """A part of a batch being probed (as a task), awaited by the recording loop."""

    def __init__(
        self, part: list[tuple[str, ingest.Look]], known: list[dict[str, Any]] | None = None
    ) -> None:
        self.part = part
        self.done = anyio.Event()
        self.cached = known is not None
        """The outcomes came from the probe cache (nothing to probe, nothing to remember)."""
        self._found: list[dict[str, Any]] = known or []
        if known is not None:
            self.done.set()

    async def start(
        self, tg: anyio.abc.TaskGroup, lanes: anyio.Semaphore, prober: Prober, root: str
    ) -> None:
        """Start probing in ``tg`` once a lane is free (at most probe_lanes probes at once);
        nothing to do for outcomes from the cache."""
        if not self.cached:
            await lanes.acquire()
            tg.start_soon(self.run, lanes, prober, root)

    async def run(self, lane: anyio.Semaphore, prober: Prober, root: str) -> None:
        try:
            self._found = await prober([p for p, _ in self.part], root)
        finally:
            lane.release()
        self.done.set()

    async def outcomes(self) -> list[dict[str, Any]]:
        await self.done.wait()
        return self._found


class HDF5EventHandler:
    """Paths seen in the watched directory -> set records and announcements."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        log: structlog.stdlib.BoundLogger | None = None,
        prober: Prober = probe_in_threads,
        service: str = "watcher",
        probe_lanes: int = 1,
    ) -> None:
        self.config = config
        self.cfg = config.services.hdf5_watcher
        self.root = Path(config.paths.incoming_dir).absolute()
        keys = Keys(config.redis.namespace)
        self.sets = Sets(redis, keys)
        self.stream = ReliableStream(
            redis, keys, MessageType.HDF5_PROCESSING, PROCESSOR_GROUP, config.streams, config.retry
        )
        self.log = log or structlog.get_logger("dsa110d.services.watcher")
        self.prober = prober
        self.probe_lanes = max(1, probe_lanes)
        """Probes run at once (1 for threads: h5py holds the GIL; 1 + workers for a pool)."""
        self.producer = Producer.here(service)
        self.cache = ProbeCache(redis, keys, self.producer.host)
        self.seen: dict[str, ingest.Look] = {}
        """Paths handled, with the look they were handled at (not probed again unless changed)."""
        self.unsettled: set[str] = set()
        self.listed: set[str] = set()
        """What the last scan found in the directory."""
        self._growing: anyio.Event | None = None
        """Set when a file joins ``unsettled`` (the stability re-checks wait on it)."""
        self.in_flight: set[str] = set()
        self.announced = 0
        self.rejected = 0
        self.on_activity: Callable[[], Awaitable[None]] | None = None
        """Called on every batch of events, wanted names or not (an ``_incomplete`` file
        being written is a set on its way: the service warms the worker pool with it)."""

    # ------------------------------------------------------------------ intake
    async def start(self) -> int:
        """Create the directory and consumer group, scan, and finish any interrupted
        announcement: the start-up work that precedes READY. Returns the files handled."""
        try:
            await anyio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))
        except OSError as exc:
            raise ConfigError(f"paths.incoming_dir: cannot create {self.root}: {exc}") from None
        self.root = await anyio.to_thread.run_sync(self.root.resolve)
        await self.stream.ensure_group()
        handled = await self.scan()
        await self.cache.keep_only(self.listed)  # files that left while we were down
        await self.check_open_sets()
        return handled

    async def scan(self) -> int:
        """Look at every entry of the watched directory."""
        try:
            names = await anyio.to_thread.run_sync(os.listdir, self.root)
        except OSError as exc:
            raise InputFileError(f"{self.root}: cannot list the watched directory: {exc}") from None
        paths = {str(self.root / n) for n in names}
        self.listed = paths
        gone = [p for p in self.seen if p not in paths]
        for path in gone:
            del self.seen[path]  # moved or deleted: forget it (bounded memory)
        await self.cache.forget(gone)
        return await self.handle(paths)

    def wanted(self, path: str) -> bool:
        """A subband name matching file_pattern (not being written, not a temporary)."""
        return ignore_reason(path, self.cfg.file_pattern) is None

    async def handle(self, paths: Iterable[str]) -> int:
        """Handle a batch of paths: settle, probe, record, announce. Returns files handled."""
        # Paths another batch is handling are left to it (a scan racing the events). A path
        # handled before was wanted then (the rules are by name): a rescan of a directory of
        # thousands of known files costs a stat each, not a name check each.
        fresh = {p for p in paths if p in self.seen or self.wanted(p)}
        candidates = sorted(fresh - self.in_flight)
        if not candidates:
            return 0
        self.in_flight.update(candidates)
        try:
            return await self._handle(candidates)
        finally:
            self.in_flight.difference_update(candidates)

    async def _handle(self, candidates: list[str]) -> int:
        settled = await self._settled(candidates)
        cached, fresh = await self._known(settled)
        # Sorted by name is by set: a burst is probed a set's worth at a time, a backlog
        # BACKLOG_CHUNK files at a time, probe_lanes parts at once, ahead of the recording
        # (the probe is CPU in a thread or worker, the recording mostly waits on the server).
        # The recording takes every part probed by then in one go (their writes share round
        # trips and the server's fsyncs), in order; the first set of a burst goes out alone.
        size = self.cfg.expected_subbands if len(fresh) <= BACKLOG_CHUNK else BACKLOG_CHUNK
        parts = [fresh[i : i + size] for i in range(0, len(fresh), size)]
        root = str(self.root)
        # a burst's parts go one at a time (to the warm probe process); a backlog's spread
        lanes = anyio.Semaphore(self.probe_lanes if len(fresh) > BACKLOG_CHUNK else 1)
        send, receive = anyio.create_memory_object_stream[_Probing](PARTS_AHEAD)

        async def probe_all() -> None:
            async with send, anyio.create_task_group() as tg:
                for probing in [*cached, *map(_Probing, parts)]:
                    await probing.start(tg, lanes, self.prober, root)
                    await send.send(probing)  # at most PARTS_AHEAD parts ahead

        async def record_all() -> None:
            held: _Probing | None = None
            async with receive:
                while True:
                    try:
                        head = held or await receive.receive()
                    except anyio.EndOfStream:
                        return
                    batch, held = [head], None
                    outcomes = list(await head.outcomes())
                    while held is None:
                        try:
                            ahead = receive.receive_nowait()
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                        if ahead.done.is_set():
                            batch.append(ahead)
                            outcomes += await ahead.outcomes()
                        else:
                            held = ahead  # still probing: next round
                    await self._record(outcomes)
                    await self._remember([b for b in batch if not b.cached], outcomes)
                    for probing in batch:
                        self.seen.update(probing.part)

        with sole_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(probe_all)
                await record_all()
        return len(settled)

    async def _known(
        self, settled: list[tuple[str, ingest.Look]]
    ) -> tuple[list[_Probing], list[tuple[str, ingest.Look]]]:
        """(parts whose outcomes the probe cache holds, the files left to probe). Files probed
        before (same path, size, mtime, inode: a restart's backlog) are not opened again;
        they are recorded first (recording is idempotent) while the others are probed."""
        known = await self.cache.known([(p, _identity(look)) for p, look in settled])
        hits = [(p, look) for p, look in settled if p in known]
        chunks = [hits[i : i + BACKLOG_CHUNK] for i in range(0, len(hits), BACKLOG_CHUNK)]
        parts = [_Probing(chunk, [known[p] for p, _ in chunk]) for chunk in chunks]
        return parts, [(p, look) for p, look in settled if p not in known]

    async def _remember(self, probed: list[_Probing], outcomes: list[dict[str, Any]]) -> None:
        """Cache what probing found about each file (not files that vanished meanwhile)."""
        looks = {p: look for b in probed for p, look in b.part}
        await self.cache.remember(
            (o["path"], _identity(looks[o["path"]]), o)
            for o in outcomes
            if o["path"] in looks and (o["ok"] or o["kind"] != ingest.GONE)
        )

    async def _settled(self, paths: list[str]) -> list[tuple[str, ingest.Look]]:
        """The paths whose two looks agree, less those handled before and unchanged since;
        the others wait in ``unsettled``."""
        first = await anyio.to_thread.run_sync(lambda: [ingest.look_at(p) for p in paths])
        changed = []
        for p, a in zip(paths, first, strict=True):
            if a is not None and a == self.seen.get(p):
                self.unsettled.discard(p)  # handled at this very look: nothing to do
            else:
                changed.append((p, a))
        if not changed:
            return []
        now = time.time_ns()
        interval = self.cfg.stability_interval_sec
        wait = max(
            (ingest.settle_wait_sec(a, now, interval) for _, a in changed if a is not None),
            default=0.0,
        )
        await anyio.sleep(wait)
        second = await anyio.to_thread.run_sync(lambda: [ingest.look_at(p) for p, _ in changed])
        ready = []
        for (p, a), b in zip(changed, second, strict=True):
            if ingest.is_settled(a, b) and b is not None:
                ready.append((p, b))
                self.unsettled.discard(p)
            elif b is not None:
                self.unsettled.add(p)  # still being written: look again
                if self._growing is not None:
                    self._growing.set()
            else:
                self.unsettled.discard(p)  # gone (renamed away or deleted)
        return [(p, b) for p, b in ready if self.seen.get(p) != b]

    async def retry_unsettled(self) -> int:
        return await self.handle(list(self.unsettled)) if self.unsettled else 0

    async def wait_unsettled(self) -> None:
        """Return once some file is still being written (at once if one is): stability
        re-checks are scheduled only while files grow, never on an idle directory."""
        while not self.unsettled:
            self._growing = anyio.Event()
            await self._growing.wait()

    # ------------------------------------------------------------------ recording
    async def _record(self, outcomes: list[dict[str, Any]]) -> None:
        good = [o for o in outcomes if o["ok"]]
        files = [
            NewFile(
                o["set_id"], o["subband"], o["resolved"], o["name_time"], o["time0_jd"],
                o["integration_s"], o["dec_rad"],
            )
            for o in good
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
            if not o["ok"] and o["kind"] != ingest.GONE:
                await self._record_bad(o)
        await _concurrently(self._announce_whole, list(dict.fromkeys(complete)))

    async def _announce_whole(self, set_id: str) -> None:
        await self.announce(set_id, partial=False)

    async def _record_bad(self, outcome: dict[str, Any]) -> None:
        """A file that is not a usable subband: on the set nearest its name timestamp."""
        path = outcome["path"]
        name = parse_subband_name(path)
        name_time = name.timestamp.timestamp() if name else time.time()
        near = await self.sets.neighbours(name_time, self.cfg.group_tolerance_sec)
        set_id = ingest.nearest_set(name_time, near, self.cfg.group_tolerance_sec)
        set_id = set_id or ingest.by_name_set_id(name_time)
        await self._fault(set_id, ErrorKind(outcome["kind"]), outcome["reason"], path, name_time)

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

    # ------------------------------------------------------------------ watching
    def watch_filter(self, change: Change, path: str) -> bool:
        return change is not Change.deleted and self.wanted(path)

    async def watch(
        self,
        stop: anyio.Event,
        on_batch: Callable[[], Awaitable[bool]] | None = None,
        on_error: Callable[[DSA110Error], Awaitable[None]] | None = None,
    ) -> None:
        """Handle inotify (or polling) events until ``stop`` is set. ``on_batch`` runs once
        the watch is armed and before each batch; returning False ends the watch.

        A batch whose handling fails with one of our errors (the state server away) goes to
        ``on_error`` and the watch goes on, still armed (events keep queueing in the kernel);
        the caller rescans to pick up that batch. Without ``on_error`` the error ends the
        watch. Errors leave as themselves, never inside an ExceptionGroup (callers catch by
        kind: a group would crash the service).

        On Linux the wait is :class:`~dsa110d.services.dirwatch.DirectoryWatch` (no wake-up
        while nothing lands); with ``force_polling`` (or elsewhere) watchfiles, whose loop
        yields every second so that ``on_batch`` still runs."""

        async def handle(paths: Iterable[str] | None) -> None:
            try:
                await (self.scan() if paths is None else self.handle(paths))
            except DSA110Error as exc:
                if on_error is None:
                    raise
                await on_error(exc)

        if self.cfg.force_polling or not dirwatch.available():
            await self._watch_polling(stop, on_batch, handle)
            return
        with sole_error():
            await self._watch_inotify(stop, on_batch, handle)

    async def _watch_inotify(
        self,
        stop: anyio.Event,
        on_batch: Callable[[], Awaitable[bool]] | None,
        handle: Callable[[Iterable[str] | None], Awaitable[None]],
    ) -> None:
        async with anyio.create_task_group() as tg:

            async def stop_on_event() -> None:
                await stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on_event)
            async with dirwatch.DirectoryWatch(self.root) as watch:
                if on_batch is not None and not await on_batch():
                    tg.cancel_scope.cancel()
                    return
                async for paths in watch.batches(WATCH_DEBOUNCE_MS, WATCH_STEP_MS):
                    if on_batch is not None and not await on_batch():
                        break
                    if self.on_activity is not None:
                        await self.on_activity()
                    # an empty batch: the kernel's event queue overflowed, events were lost
                    await handle(paths or None)
            tg.cancel_scope.cancel()

    async def _watch_polling(
        self,
        stop: anyio.Event,
        on_batch: Callable[[], Awaitable[bool]] | None,
        handle: Callable[[Iterable[str] | None], Awaitable[None]],
    ) -> None:
        async for changes in awatch(
            self.root,
            watch_filter=self.watch_filter,
            debounce=WATCH_DEBOUNCE_MS,
            step=WATCH_STEP_MS,
            stop_event=stop,
            rust_timeout=1000,
            yield_on_timeout=True,
            force_polling=self.cfg.force_polling,
            poll_delay_ms=int(min(self.cfg.poll_interval_sec, 1.0) * 1000),
            recursive=False,
        ):
            if on_batch is not None and not await on_batch():
                return
            if changes:
                await handle([path for _, path in changes])

    async def tick(self) -> None:
        """One reconciliation: rescan, retry unsettled files, open sets, post_handle."""
        await self.scan()
        await self.retry_unsettled()
        await self.check_open_sets()
        await self.move_converted()


@register_service("watcher")
class HDF5WatcherService(Service):
    """The ``watcher`` service (see the module docstring)."""

    probe_job: ClassVar[Callable[..., Any]] = staticmethod(ingest.probe_files)
    """What the probe processes run on a part of a batch (tests put a crashing one here)."""

    def __init__(self) -> None:
        self.handler: HDF5EventHandler | None = None
        self.probes: WorkerPool | None = None
        self.fault = ""
        self._rescan_wanted = anyio.Event()
        """Set by a fault: :meth:`_rescan_after_trouble` reconciles soon after."""

    async def start(self, ctx: ServiceContext) -> None:
        # Probes run in a process of the watcher's own (never the daemon's shared pool, whose
        # workers may be busy converting for minutes): libhdf5 parsing an untrusted file may
        # crash or hang, which must cost a worker, not the daemon. One long-lived process, fed
        # in parts (a process per file would cost ~100 ms each; the burst goal is p99 < 500
        # ms), and more for a backlog's parts, retired once it is probed.
        self.probes = WorkerPool(
            PROBE_WORKERS, PROBE_MODULES, beat_sec=1.0, idle_sec=PROBE_IDLE_SEC, keep=1
        )
        await self.probes.start()
        prober = isolated_prober(self.probes, type(self).probe_job)
        self.handler = HDF5EventHandler(
            ctx.config, ctx.redis, ctx.log, prober, probe_lanes=PROBE_WORKERS
        )
        self.handler.on_activity = lambda: self._warm(ctx)  # files landing: jobs are coming
        handled = await self.handler.start()
        ctx.log.info("watcher_started", directory=str(self.handler.root), files=handled)

    async def stop(self, ctx: ServiceContext) -> None:
        if self.probes is not None:
            await self.probes.close()

    async def run(self, ctx: ServiceContext) -> None:
        handler = self.handler
        assert handler is not None, "start() runs before run()"
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, ctx, handler, stop)
            tg.start_soon(self._every, ctx, self._scan_period(ctx), handler.tick)
            tg.start_soon(self._every, ctx, self._open_period(ctx), handler.check_open_sets)
            tg.start_soon(self._settle_growing, ctx, handler)
            tg.start_soon(self._rescan_after_trouble, ctx, handler)
            await ctx.stopping.wait()
            stop.set()
            tg.cancel_scope.cancel()

    async def _watch(
        self, ctx: ServiceContext, handler: HDF5EventHandler, stop: anyio.Event
    ) -> None:
        armed = False

        async def on_batch() -> bool:
            nonlocal armed
            if not armed:  # the watch is live now: catch what landed while none was armed
                armed = True
                await self._guarded(ctx, handler.scan)
            return await ctx.take_work()

        async def on_error(exc: DSA110Error) -> None:
            self._trouble(ctx, exc)  # the batch is picked up by the rescan this asks for

        while not ctx.stopping.is_set():
            armed = False  # a watch armed again after a fault rescans (events were lost)
            try:
                await handler.watch(stop, on_batch, on_error)
            except DSA110Error as exc:
                self._trouble(ctx, exc)
                await ctx.sleep(1.0)
            else:
                return

    async def _every(
        self, ctx: ServiceContext, period: float, job: Callable[[], Awaitable[Any]]
    ) -> None:
        while await ctx.sleep(period) and await ctx.take_work():
            await self._guarded(ctx, job)

    @staticmethod
    async def _warm(ctx: ServiceContext) -> None:
        """Warm the daemon's worker pool; a failure to spawn is logged, never the watch's."""
        try:
            await ctx.pool.warm()
        except Exception as exc:
            if is_service_fault(exc):
                raise
            ctx.log.warning("worker_pool_warm_failed", error=describe(exc))

    async def _settle_growing(self, ctx: ServiceContext, handler: HDF5EventHandler) -> None:
        """Every ``stability_interval_sec`` while files are being written; asleep otherwise."""
        period = ctx.config.services.hdf5_watcher.stability_interval_sec
        while True:
            await handler.wait_unsettled()
            if not (await ctx.sleep(period) and await ctx.take_work()):
                return
            await self._guarded(ctx, handler.retry_unsettled)

    async def _rescan_after_trouble(self, ctx: ServiceContext, handler: HDF5EventHandler) -> None:
        """The safety net after any fault: a full reconciliation (rescan, unsettled files,
        open sets) soon after, retried with backoff until one succeeds.

        A batch whose handling failed (the state server away, the directory unreadable) is
        not handled again by the watch: its events are spent, and files that landed while no
        watch was armed made none. The periodic scan would find them, but only every
        ``poll_interval_sec`` (a minute in production); this one runs as soon as the server
        is back. Asleep while nothing fails."""
        retry = ctx.config.retry
        policy = RetryPolicy(1, retry.base_delay_sec, min(retry.max_delay_sec, RESCAN_CAP_SEC))
        backoff = Backoff(policy)
        while True:
            await self._rescan_wanted.wait()
            if not (await ctx.sleep(backoff.next_delay()) and await ctx.take_work()):
                return
            self._rescan_wanted = anyio.Event()  # faults from now on ask again
            await self._guarded(ctx, handler.tick)
            if not self._rescan_wanted.is_set():
                backoff.reset()
                ctx.log.info("watcher_recovered", rescanned=len(handler.listed))

    async def _guarded(self, ctx: ServiceContext, job: Callable[[], Awaitable[Any]]) -> None:
        try:
            await job()
        except DSA110Error as exc:
            self._trouble(ctx, exc)
        else:
            self.fault = ""
        if self.handler is not None:
            ctx.metrics.backlog = len(self.handler.unsettled)

    def _trouble(self, ctx: ServiceContext, exc: DSA110Error) -> None:
        """A fault of a scan or a batch: reported (once while it lasts) and a rescan asked."""
        if str(exc) != self.fault:
            ctx.log.warning("watcher_fault", error=str(exc))
        self.fault = str(exc)
        self._rescan_wanted.set()

    @staticmethod
    def _scan_period(ctx: ServiceContext) -> float:
        return ctx.config.services.hdf5_watcher.poll_interval_sec

    @staticmethod
    def _open_period(ctx: ServiceContext) -> float:
        cfg = ctx.config.services.hdf5_watcher
        return min(cfg.poll_interval_sec, cfg.processing_timeout_sec / TIMEOUT_CHECKS_PER_TIMEOUT)

    def health(self) -> HealthReport:
        if self.fault:
            return HealthReport(Health.DEGRADED, self.fault)
        deaths = self.probes.recent_deaths() if self.probes is not None else 0
        if deaths >= DEATHS_DEGRADED:
            return HealthReport(
                Health.DEGRADED, f"{deaths} probe processes died recently (see subband_fault)"
            )
        return HealthReport.healthy()
