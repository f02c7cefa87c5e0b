"""The Service interface every dsa110d service implements, and the registry of service classes.

A service is a long-lived async component (the HDF5 watcher, the MS processor, the variability
analyzer, or a fourth one) that the :class:`~dsa110d.supervisor.ServiceManager` runs as its own
supervised anyio task. Adding a service is one subclass plus one ``@register_service("name")``.

Lifecycle, as the manager drives it:

1. **Construction**: ``cls()`` with no arguments. Keep it trivial: no I/O. A restart after a
   crash builds a *fresh* instance, so nothing survives a crash but what is in Redis or on disk.
2. ``await start(ctx)``: **start-up**. Connect what needs connecting, create consumer groups,
   and do the work that must precede READY (the watcher's initial directory scan). The daemon
   tells systemd READY=1 only once every service's ``start`` has returned. An exception here is
   a crash (restarted with backoff, counted against the restart intensity).
3. ``await run(ctx)``: **the work loop**. Take work only through ``await ctx.take_work()``, which
   returns False once the daemon is stopping (so the loop returns) and blocks while an operator
   has paused the service. Call ``ctx.beat()`` (``take_work`` and ``ctx.sleep`` do it for you)
   at least every ``supervisor.registry_ttl_sec``: a service whose heartbeat goes stale stops the
   systemd watchdog pings, because a stuck service is as bad as a wedged loop. Long CPU-bound
   work goes to ``await ctx.pool.run(func, *args)`` (worker processes), which keeps the heartbeat
   fresh while the worker lives. Returning from ``run`` while the daemon is not stopping, or
   raising, is a crash: the manager restarts the service (one-for-one; siblings are untouched).
4. **Shutdown**: on SIGTERM the manager sets ``ctx.stopping``; ``take_work`` returns False and
   in-flight work has ``supervisor.shutdown_grace_sec`` to finish. Past the grace the ``run``
   task is *cancelled*: the job in hand must then be abandoned **unacked** (so the stream
   redelivers it) and its temporary outputs removed. Write outputs through
   :mod:`dsa110d.science.atomic` and ack only after the output is in place, and cancellation
   does this by itself (``atomic_dir`` removes its temporary directory on any exception).
5. ``await stop(ctx)``: **clean-up** after ``run`` has ended for any reason (shutdown, crash,
   operator restart): close what ``start`` opened. It runs shielded with a short timeout.

Reporting:

- ``health()`` returns a :class:`HealthReport` (HEALTHY, DEGRADED, UNHEALTHY or STOPPING with a
  reason: an open circuit breaker, Redis unreachable, a backlog past
  ``supervisor.backlog_degraded``, a worker pool that keeps dying). It is called from the event
  loop every heartbeat, so it must be quick and must not await.
- Metrics go into ``ctx.metrics`` (:class:`~dsa110d.metrics.ServiceMetrics`): wrap each job in
  ``with ctx.metrics.job():`` for processed/failed counts and durations, set ``queue_lag_sec``
  and ``backlog``, and count domain results with ``ctx.metrics.add("sets")``. The manager adds
  process RSS and CPU and publishes the lot to the registry and Prometheus.
"""

from __future__ import annotations

import enum
import importlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
import structlog

from dsa110d import catalogue
from dsa110d.config import Config
from dsa110d.errors import ConfigError
from dsa110d.metrics import ServiceMetrics
from dsa110d.state.connection import Redis

if TYPE_CHECKING:
    from dsa110d.workers import WorkerPool

T = TypeVar("T")


class Health(enum.Enum):
    """A service's condition, in order of severity (the worst one wins when aggregating)."""

    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2
    STOPPING = 3

    @property
    def severity(self) -> int:
        return self.value


@dataclass(frozen=True)
class HealthReport:
    """A health and the reason for it (empty when healthy)."""

    health: Health
    reason: str = ""

    @classmethod
    def healthy(cls) -> HealthReport:
        return cls(Health.HEALTHY)


def worst(reports: list[tuple[str, HealthReport]]) -> HealthReport:
    """The worst report wins; its reason is prefixed with the service that gave it."""
    if not reports:
        return HealthReport.healthy()
    name, report = max(reports, key=lambda item: item[1].health.severity)
    if report.health is Health.HEALTHY:
        return report
    return HealthReport(report.health, f"{name}: {report.reason}" if report.reason else name)


class ServiceContext:
    """What a running service gets from the manager: config, redis, pool, logger, metrics.

    ``config`` is a property: after a SIGHUP reload it returns the new reloadable settings.
    """

    def __init__(
        self,
        name: str,
        config: Callable[[], Config],
        redis: Redis,
        pool: WorkerPool,
        logger: structlog.stdlib.BoundLogger,
        metrics: ServiceMetrics,
    ) -> None:
        self.name = name
        self._config = config
        self.redis = redis
        self.pool = pool
        self.log = logger
        self.metrics = metrics
        self.stopping = anyio.Event()
        self._resumed = anyio.Event()
        self._resumed.set()
        self.last_beat = time.monotonic()
        self._in_flight = 0

    @property
    def config(self) -> Config:
        return self._config()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def beat(self) -> None:
        """I am alive and making progress (feeds the heartbeat and the systemd watchdog)."""
        self.last_beat = time.monotonic()

    def pause(self) -> None:
        if not self.paused:
            self._resumed = anyio.Event()

    def resume(self) -> None:
        self._resumed.set()

    async def take_work(self) -> bool:
        """True: take the next piece of work. False: the daemon is stopping, return from run.

        Blocks while paused (beating, since a paused service is alive, not stuck).
        """
        self.beat()
        while self.paused and not self.stopping.is_set():
            with anyio.move_on_after(self._beat_period()):
                await self._resumed.wait()
            self.beat()
        return not self.stopping.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep, beating meanwhile; returns early with False when the daemon starts stopping."""
        deadline = anyio.current_time() + seconds
        while not self.stopping.is_set():
            self.beat()
            left = deadline - anyio.current_time()
            if left <= 0:
                return True
            with anyio.move_on_after(min(left, self._beat_period())):
                await self.stopping.wait()
        return False

    def gate(self, handler: Callable[[T], Awaitable[None]]) -> Callable[[T], Awaitable[None]]:
        """Wrap a stream handler so that it takes work only through :meth:`take_work`.

        While paused it waits; once stopping it never starts the job, it waits to be
        cancelled, so the entry stays unacked and the stream redelivers it. Jobs in flight
        are counted so that :meth:`consume` lets them finish within the grace period.
        """

        async def gated(item: T) -> None:
            if not await self.take_work():
                await anyio.sleep_forever()  # stopping: leave it unacked for redelivery
            self._in_flight += 1
            try:
                await handler(item)
            finally:
                self._in_flight -= 1
                self.beat()

        return gated

    async def consume(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a consume loop (e.g. ``StreamConsumer(..., ctx.gate(handle)).run``) until the
        daemon stops: then wait for the job in flight to finish and cancel the loop.

        The loop beats for the service while no job is in flight (it is waiting on the
        server, not stuck); a job in flight must beat by itself (``run_in_worker`` does).
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while not self.stopping.is_set() or self._in_flight:
                if not self._in_flight:
                    self.beat()
                with anyio.move_on_after(self._beat_period()):
                    await self.stopping.wait()
                if self.stopping.is_set() and self._in_flight:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    async def run_in_worker(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``ctx.pool.run`` that keeps this service's heartbeat fresh while the worker lives."""
        return await self.pool.run(func, *args, on_wait=self.beat, **kwargs)

    def _beat_period(self) -> float:
        return max(0.05, self.config.supervisor.registry_ttl_sec / 3)


class Service(ABC):
    """One long-lived component run by the ServiceManager (see the module docstring)."""

    name: ClassVar[str] = ""
    worker_modules: ClassVar[tuple[str, ...]] = ()
    """Heavy modules the worker processes import once at start-up (e.g. ``pyuvdata``)."""

    async def start(self, ctx: ServiceContext) -> None:  # noqa: B027 - optional hook
        """Start-up that must finish before READY (default: nothing)."""

    @abstractmethod
    async def run(self, ctx: ServiceContext) -> None:
        """The work loop: ``while await ctx.take_work(): ...``; return when it says False."""

    def health(self) -> HealthReport:
        """Current health; quick, synchronous (default: healthy)."""
        return HealthReport.healthy()

    async def stop(self, ctx: ServiceContext) -> None:  # noqa: B027 - optional hook
        """Clean-up after ``run`` ended (default: nothing)."""


ServiceClass = type[Service]
_SERVICES: dict[str, ServiceClass] = {}
S = TypeVar("S", bound=ServiceClass)


def register_service(name: str) -> Callable[[S], S]:
    """Class decorator: make a service runnable as ``dsa110d run --services <name>``."""

    def decorate(cls: S) -> S:
        existing = _SERVICES.get(name)
        if existing is not None and existing is not cls:
            raise ConfigError(f"service {name!r} is registered twice ({existing.__qualname__})")
        cls.name = name
        _SERVICES[name] = cls
        return cls

    return decorate


def service_class(name: str) -> ServiceClass:
    try:
        return _SERVICES[name]
    except KeyError:
        raise ConfigError(
            f"unknown service {name!r}: choose from {', '.join(registered_services())}"
        ) from None


def registered_services() -> list[str]:
    return sorted(_SERVICES)


EXTRA_MODULES_VAR = "DSA110_SERVICE_MODULES"


def load_service_modules(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Import the built-in service modules and any in ``$DSA110_SERVICE_MODULES``
    (comma-separated; how tests and site plugins add a service); returns the registered names."""
    extra = [m.strip() for m in environ.get(EXTRA_MODULES_VAR, "").split(",") if m.strip()]
    for module in (*(e.module for e in catalogue.SERVICES), *extra):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{EXTRA_MODULES_VAR}: cannot import {module!r}: {exc}") from None
    return registered_services()
