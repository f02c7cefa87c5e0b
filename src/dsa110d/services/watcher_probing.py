"""How the watcher probes settled files: in a thread, in the daemon's workers, or in probe
processes of its own (:func:`isolated_prober`), a part of a batch at a time (:class:`Probing`).

A prober takes paths and the watched root and returns one typed outcome per path
(:class:`~dsa110d.science.hdf5.ingest.GoodSubband` or
:class:`~dsa110d.science.hdf5.ingest.FileFault`); what crosses a process boundary is the
JSON of :func:`~dsa110d.science.hdf5.ingest.probe_files`, decoded here.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from dsa110d.errors import describe, is_service_fault
from dsa110d.science.hdf5 import ingest
from dsa110d.science.hdf5.ingest import ProbeOutcome
from dsa110d.state.probes import Identity
from dsa110d.workers import WorkerPool

PROBE_CHUNK = 64
"""Files probed per thread hop (~2 ms each on tiny files): the loop stays responsive."""
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

Prober = Callable[[list[str], str], Awaitable[list[ProbeOutcome]]]
Worker = Callable[..., Awaitable[Any]]


def decoded(replies: Any, paths: Sequence[str]) -> list[ProbeOutcome]:
    """A probe job's JSON reply as outcomes, one per path (``ValueError`` otherwise)."""
    if not isinstance(replies, list) or len(replies) != len(paths):
        kind = type(replies).__name__
        raise ValueError(f"a probe job answered {kind}, not {len(paths)} outcomes")
    return [ingest.outcome_of(r) for r in replies]


async def probe_in_threads(paths: list[str], root: str) -> list[ProbeOutcome]:
    """Probe in a thread, a chunk at a time (blocking file I/O off the event loop)."""
    found: list[ProbeOutcome] = []
    for i in range(0, len(paths), PROBE_CHUNK):
        found += await anyio.to_thread.run_sync(
            ingest.probe_outcomes, paths[i : i + PROBE_CHUNK], root
        )
    return found


def pooled_prober(worker: Worker, lanes: int) -> Prober:
    """A prober that sends a batch of at least WORKER_MIN_FILES to one of ``lanes`` worker
    processes when one is free, else probes it in a thread. The handler keeps up to
    ``lanes + 1`` batches in flight (its ``probe_lanes``), so all lanes stay busy."""
    free = [lanes]

    async def probe(paths: list[str], root: str) -> list[ProbeOutcome]:
        if len(paths) < WORKER_MIN_FILES or free[0] < 1:
            return await probe_in_threads(paths, root)
        free[0] -= 1
        try:
            return decoded(await worker(ingest.probe_files, paths, root), paths)
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

    A job that fails as a whole (the worker died, hung past its deadline, raised, or answered
    something that is not one outcome per file) is retried a file per job, so only the file
    at fault is recorded, with the reason: a good file in the same part is unharmed. ``job``
    is what the worker runs (a module-level function like :func:`ingest.probe_files`); a
    job's deadline is ``base_sec`` plus ``per_file_sec`` a file."""

    async def probe(paths: list[str], root: str) -> list[ProbeOutcome]:
        deadline = base_sec + per_file_sec * len(paths)
        try:
            with anyio.fail_after(deadline):  # cancelling the job kills its worker
                replies = await pool.run(job, paths, root)
            return decoded(replies, paths)
        except TimeoutError:
            failure = f"the probe process took more than {deadline:g} s (killed)"
        except Exception as exc:
            if is_service_fault(exc):
                raise
            failure = f"the probe process failed on it: {describe(exc)}"
        if len(paths) == 1:
            return [ingest.file_fault(paths[0], f"{paths[0]}: {failure}")]
        found: list[ProbeOutcome] = []
        for path in paths:  # which file was it? one job each
            found += await probe([path], root)
        return found

    return probe


def identity(look: ingest.Look) -> Identity:
    """A file's identity in the probe cache."""
    return (look.size, look.mtime_ns, look.inode)


class Probing:
    """A part of a batch being probed (as a task), awaited by the recording loop."""

    def __init__(
        self, part: list[tuple[str, ingest.Look]], known: list[ProbeOutcome] | None = None
    ) -> None:
        self.part = part
        self.done = anyio.Event()
        self.cached = known is not None
        """The outcomes came from the probe cache (nothing to probe, nothing to remember)."""
        self._found: list[ProbeOutcome] = known or []
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

    async def outcomes(self) -> list[ProbeOutcome]:
        await self.done.wait()
        return self._found
