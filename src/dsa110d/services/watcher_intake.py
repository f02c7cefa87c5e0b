"""The watcher's intake: paths seen in the watched directory (scans, inotify or polling
events) settled, probed and handed to the set side (:class:`~dsa110d.services.watcher_sets.
SetAnnouncer`). See :mod:`dsa110d.services.watcher` for the rules.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio
import anyio.to_thread
import structlog
from watchfiles import Change, awatch

from dsa110d.config import Config
from dsa110d.errors import ConfigError, DSA110Error, InputFileError, sole_error
from dsa110d.science.hdf5 import ingest
from dsa110d.science.hdf5.ingest import FileFault, ProbeOutcome
from dsa110d.science.hdf5.subbands import ignore_reason
from dsa110d.services import dirwatch
from dsa110d.services.watcher_probing import Prober, Probing, identity, probe_in_threads
from dsa110d.services.watcher_sets import SetAnnouncer
from dsa110d.state.connection import Redis
from dsa110d.state.probes import ProbeCache

BACKLOG_CHUNK = 256
"""Files probed and recorded at a time once a batch holds more than one chunk (a backlog):
the probe of the next chunk overlaps the recording of this one, and sets go out as they
complete rather than after the whole backlog is probed."""
PARTS_AHEAD = 8
"""Parts probed ahead of the recording at most (a burst's sets; bounded memory)."""
WATCH_DEBOUNCE_MS = 200
WATCH_STEP_MS = 20
"""Event batching: yield after 20 ms without new events, at most 200 ms after the first."""


class HDF5EventHandler(SetAnnouncer):
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
        super().__init__(config, redis, log, service)
        self.root = Path(config.paths.incoming_dir).absolute()
        self.prober = prober
        self.probe_lanes = max(1, probe_lanes)
        """Probes run at once (1 for threads: h5py holds the GIL; 1 + workers for a pool)."""
        self.cache = ProbeCache(redis, self.keys, self.producer.host)
        self.seen: dict[str, ingest.Look] = {}
        """Paths handled, with the look they were handled at (not probed again unless changed)."""
        self.unsettled: set[str] = set()
        self.listed: set[str] = set()
        """What the last scan found in the directory."""
        self._growing: anyio.Event | None = None
        """Set when a file joins ``unsettled`` (the stability re-checks wait on it)."""
        self.in_flight: set[str] = set()
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
        send, receive = anyio.create_memory_object_stream[Probing](PARTS_AHEAD)

        async def probe_all() -> None:
            async with send, anyio.create_task_group() as tg:
                for probing in [*cached, *map(Probing, parts)]:
                    await probing.start(tg, lanes, self.prober, root)
                    await send.send(probing)  # at most PARTS_AHEAD parts ahead

        async def record_all() -> None:
            held: Probing | None = None
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
    ) -> tuple[list[Probing], list[tuple[str, ingest.Look]]]:
        """(parts whose outcomes the probe cache holds, the files left to probe). Files probed
        before (same path, size, mtime, inode: a restart's backlog) are not opened again;
        they are recorded first (recording is idempotent) while the others are probed."""
        cached = await self.cache.known([(p, identity(look)) for p, look in settled])
        known = {}
        for path, entry in cached.items():
            with contextlib.suppress(ValueError):  # another version's entry: probe again
                known[path] = ingest.outcome_of(entry)
        hits = [(p, look) for p, look in settled if p in known]
        chunks = [hits[i : i + BACKLOG_CHUNK] for i in range(0, len(hits), BACKLOG_CHUNK)]
        parts = [Probing(chunk, [known[p] for p, _ in chunk]) for chunk in chunks]
        return parts, [(p, look) for p, look in settled if p not in known]

    async def _remember(self, probed: list[Probing], outcomes: list[ProbeOutcome]) -> None:
        """Cache what probing found about each file (not files that vanished meanwhile)."""
        looks = {p: look for b in probed for p, look in b.part}
        await self.cache.remember(
            (o.path, identity(looks[o.path]), ingest.outcome_json(o))
            for o in outcomes
            if o.path in looks and not (isinstance(o, FileFault) and o.kind == ingest.GONE)
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
