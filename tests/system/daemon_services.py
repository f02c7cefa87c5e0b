"""Test services for the daemon-as-a-process tests, registered through
``DSA110_SERVICE_MODULES=tests.system.daemon_services``. Their knobs come from ``DSA110_TEST_*``
environment variables; they leave their traces in ``$DSA110_TEST_DIR``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio

from dsa110d.messages import MessageType
from dsa110d.science.atomic import atomic_dir
from dsa110d.science.hdf5 import ingest
from dsa110d.services.base import Service, ServiceContext, register_service
from dsa110d.services.watcher import HDF5WatcherService
from dsa110d.state.consumer import StreamConsumer, consumer_name
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream


def _dir() -> Path:
    return Path(os.environ["DSA110_TEST_DIR"])


def _mark(name: str) -> None:
    with open(_dir() / name, "a") as handle:
        handle.write(f"{time.time()}\n")


async def _work(ctx: ServiceContext, seconds: float) -> None:
    """Busy for ``seconds`` (not cut short by stopping, unlike ctx.sleep), beating."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await anyio.sleep(0.05)
        ctx.beat()


@register_service("steady")
class Steady(Service):
    """Ticks every 0.1 s: proves it keeps running while a sibling crashes."""

    async def run(self, ctx: ServiceContext) -> None:
        while await ctx.take_work():
            with ctx.metrics.job():
                _mark("steady.ticks")
            await ctx.sleep(0.1)


@register_service("crashy")
class Crashy(Service):
    """Raises shortly after each start."""

    async def start(self, ctx: ServiceContext) -> None:
        _mark("crashy.starts")

    async def run(self, ctx: ServiceContext) -> None:
        await ctx.sleep(float(os.environ.get("DSA110_TEST_CRASH_AFTER", "0.2")))
        raise RuntimeError("crashy crashed on purpose")


@register_service("slowstart")
class SlowStart(Service):
    """A start-up that takes a while: READY must wait for it."""

    async def start(self, ctx: ServiceContext) -> None:
        await ctx.sleep(float(os.environ.get("DSA110_TEST_START_SEC", "1.0")))
        _mark("slowstart.started")

    async def run(self, ctx: ServiceContext) -> None:
        while await ctx.take_work():
            await ctx.sleep(0.2)


@register_service("stuck")
class Stuck(Service):
    """Runs normally, then waits forever without beating (a stuck service)."""

    async def run(self, ctx: ServiceContext) -> None:
        await ctx.sleep(float(os.environ.get("DSA110_TEST_STUCK_AFTER", "1.5")))
        _mark("stuck.now")
        await anyio.Event().wait()


@register_service("blocker")
class Blocker(Service):
    """Runs normally, then blocks the whole event loop with a synchronous sleep."""

    async def run(self, ctx: ServiceContext) -> None:
        await ctx.sleep(float(os.environ.get("DSA110_TEST_STUCK_AFTER", "1.5")))
        _mark("blocker.now")
        time.sleep(float(os.environ.get("DSA110_TEST_BLOCK_SEC", "30")))


@register_service("jobs")
class Jobs(Service):
    """A file queue: a job is ``queue/<id>.json``, its output ``out/<id>`` (atomic), and the
    job file is removed (acked) only after the output is in place. A job takes
    ``DSA110_TEST_JOB_SEC``; a shutdown past the grace abandons it unacked."""

    async def run(self, ctx: ServiceContext) -> None:
        queue, out = _dir() / "queue", _dir() / "out"
        out.mkdir(exist_ok=True)
        while await ctx.take_work():
            jobs = sorted(queue.glob("*.json"))
            if not jobs:
                await ctx.sleep(0.1)
                continue
            job = jobs[0]
            with ctx.metrics.job():
                await self._do(ctx, job, out / job.stem)
            job.unlink()  # the ack, after the effect is durable

    async def _do(self, ctx: ServiceContext, job: Path, final: Path) -> None:
        spec = json.loads(job.read_text())
        _mark(f"job.{job.stem}.began")
        with atomic_dir(final) as tmp:
            (tmp / "part1").write_text("half")
            await _work(ctx, float(os.environ.get("DSA110_TEST_JOB_SEC", "1.0")))
            (tmp / "part2").write_text(json.dumps(spec))
        ctx.metrics.add("blocks")


@register_service("streamjobs")
class StreamJobs(Service):
    """Consumes MS_PROCESSING messages from a reliable stream; each writes ``out/<job>``
    atomically in ``DSA110_TEST_JOB_SEC`` and is acked by the consumer only afterwards."""

    async def start(self, ctx: ServiceContext) -> None:
        self.stream = ReliableStream(
            ctx.redis,
            Keys(ctx.config.redis.namespace),
            MessageType.MS_PROCESSING,
            group="streamjobs",
            streams=ctx.config.streams,
            retry=ctx.config.retry,
        )
        await self.stream.ensure_group()

    async def run(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        consumer = StreamConsumer(self.stream, consumer_name("streamjobs"), ctx.gate(self.handle))
        await ctx.consume(consumer.run)

    async def handle(self, delivery: Delivery) -> None:
        job = str(delivery.message.payload["job"])
        final = _dir() / "out" / job
        final.parent.mkdir(exist_ok=True)
        _mark(f"job.{job}.began")
        if final.exists():
            return  # idempotent: done before, the ack was lost
        with self.ctx.metrics.job(), atomic_dir(final) as tmp:
            (tmp / "part1").write_text("half")
            await _work(self.ctx, float(os.environ.get("DSA110_TEST_JOB_SEC", "1.0")))
            (tmp / "part2").write_text(json.dumps(delivery.message.payload))


SIGSEGV_MARKER = b"SIGSEGV ME"
"""A file starting with these bytes kills the watcher's probe process (``watcher_segv``)."""


def probe_or_segfault(paths: list[str], root: str) -> list[dict[str, Any]]:
    """The watcher's probe job, except that a file starting with SIGSEGV_MARKER kills the
    probe process with a real SIGSEGV, as libhdf5 would on a file that trips one of its bugs
    (this runs in the probe process, never in the daemon's)."""
    for path in paths:
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            if handle.read(len(SIGSEGV_MARKER)) == SIGSEGV_MARKER:
                os.kill(os.getpid(), signal.SIGSEGV)
    return ingest.probe_files(paths, root)


@register_service("watcher_segv")
class WatcherSegv(HDF5WatcherService):
    """The real watcher service whose probe processes die on SIGSEGV_MARKER files."""

    probe_job = staticmethod(probe_or_segfault)
