"""The HDF5 watcher: subband files in ``paths.incoming_dir`` -> set records -> exactly one
HDF5_PROCESSING message per complete set.

:class:`HDF5EventHandler` does the work and is usable without the daemon (tests, benchmark):
its intake (scans, events, settling, probing) is :mod:`~dsa110d.services.watcher_intake`, its
set side (recording, announcing, open sets) :mod:`~dsa110d.services.watcher_sets`, the probers
:mod:`~dsa110d.services.watcher_probing`. :class:`HDF5WatcherService`, here, runs it as the
``watcher`` service:

* **Where paths come from**: a full scan at start-up (before READY), inotify events from
  :mod:`~dsa110d.services.dirwatch` (created, moved-to, modified; watchfiles polling with
  ``force_polling``), a rescan each time the watch is armed (files that landed during the
  start-up scan, or while no watch was armed), and a reconciliation scan every
  ``poll_interval_sec``. After any fault (a batch or scan that met
  the state server away, an unreadable directory) a full reconciliation follows at once,
  retried with backoff (at most RESCAN_CAP_SEC apart) until it succeeds: a batch whose
  handling failed is not lost until the next periodic scan, and an outage never crashes the
  service (the watch stays armed through it).
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

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import anyio

from dsa110d.errors import DSA110Error, describe, is_service_fault
from dsa110d.resilience import Backoff, RetryPolicy
from dsa110d.science.hdf5 import ingest
from dsa110d.services.base import Health, HealthReport, Service, ServiceContext, register_service
from dsa110d.services.watcher_intake import HDF5EventHandler
from dsa110d.services.watcher_probing import (
    PROBE_IDLE_SEC,
    PROBE_MODULES,
    PROBE_WORKERS,
    isolated_prober,
    pooled_prober,
    probe_in_threads,
)
from dsa110d.workers import DEATHS_DEGRADED, WorkerPool

__all__ = [
    "PROBE_MODULES",
    "HDF5EventHandler",
    "HDF5WatcherService",
    "isolated_prober",
    "pooled_prober",
    "probe_in_threads",
]

RESCAN_CAP_SEC = 5.0
"""After a fault the rescan is retried with backoff (retry.base_delay_sec doubling) up to this
apart: a server back from an outage is noticed within it, as by the stream consumers."""
TIMEOUT_CHECKS_PER_TIMEOUT = 4
"""Open sets are checked this often per processing_timeout_sec (and at least every poll)."""


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
