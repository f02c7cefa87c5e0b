"""The ServiceManager and the daemon's lifecycle.

:func:`run_daemon` reads top to bottom: connect (the server answers), start the worker pool,
start every service's supervisor, READY once each service finished its start-up, then react to
events (SIGHUP: RELOADING, reload, READY; SIGTERM/SIGINT: stop; restart intensity exceeded:
stop and fail) and finally STOPPING, graceful shutdown within ``supervisor.shutdown_grace_sec``,
exit. Each service runs in its own supervised task with one-for-one restarts (jittered
exponential backoff); more than ``supervisor.max_restarts`` crashes in ``supervisor.window_sec``
make the daemon exit non-zero so that systemd restarts it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dsa110d import __version__, catalogue, logs
from dsa110d.alerts.engine import AlertEngine
from dsa110d.config import RELOADABLE_SECTIONS, Config, reloadable_changes
from dsa110d.errors import (
    CircuitOpenError,
    ConfigError,
    DSA110Error,
    MessageError,
    StateError,
    describe,
    is_service_fault,
)
from dsa110d.housekeeping import housekeeping_loop
from dsa110d.logs import get_logger
from dsa110d.metrics import ProcessStats, PrometheusCollector, ServiceMetrics, serve_prometheus
from dsa110d.notify import Notifier, watchdog_period
from dsa110d.resilience import BreakerBoard, RetryPolicy, state_server_breaker
from dsa110d.services.base import (
    Health,
    HealthReport,
    Service,
    ServiceClass,
    ServiceContext,
    service_class,
    worst,
)
from dsa110d.state.connection import Redis, connected, describe_target
from dsa110d.state.control import ANY, ControlChannel, ControlCommand
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry
from dsa110d.workers import DEATHS_DEGRADED, WorkerPool

EXIT_OK = 0
EXIT_FAILED = 1
STOP_HOOK_TIMEOUT_SEC = 5.0

log = get_logger("dsa110d.supervisor")
RESTART_MIN_FRACTION = 0.5
"""A restarted service waits at least half its backoff ceiling: never straight back."""
CONTROL_RETRY = RetryPolicy(base_delay_sec=0.5, max_delay_sec=30.0, min_fraction=0.5)
"""Waiting out an unreachable state server between attempts to listen for control commands."""
Reloader = Callable[[], Config]


def enabled_services(config: Config, names: list[str]) -> list[str]:
    """The chosen services minus the built-in ones switched off in the config.

    When that leaves none (``--services web`` with the console off), the daemon would run
    nothing and report healthy: a configuration error instead, naming the keys."""
    kept, off = [], []
    for name in names:
        section = catalogue.section_of(name)
        if section is not None and not getattr(config.services, section).enabled:
            log.info("service_disabled", service=name, key=f"services.{section}.enabled")
            off.append(f"services.{section}.enabled")
            continue
        kept.append(name)
    if names and not kept:
        raise ConfigError(f"every service chosen is switched off ({', '.join(off)} is false)")
    return kept


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Slot:
    """One supervised service: its class, current instance, context and state."""

    name: str
    cls: ServiceClass
    ctx: ServiceContext
    service: Service | None = None
    state: str = "starting"  # starting, running, backoff, stopped
    restarts: int = 0
    last_error: str = ""
    scope: anyio.CancelScope | None = None
    restart_requested: bool = False
    started: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


Event = tuple[str, str]  # (kind, detail): ready, reload, stop, fatal


class ServiceManager:
    """Supervises the services of one daemon, aggregates their health, publishes heartbeats."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        pool: WorkerPool,
        names: list[str],
        events: MemoryObjectSendStream[Event],
    ) -> None:
        self.config = config
        self.pool = pool
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started_at = _now_iso()
        self.stopping = False
        self.server_problem = ""
        target = describe_target(config)
        self.registry = Registry(redis, Keys(config.redis.namespace), target)
        self.control = ControlChannel(redis, Keys(config.redis.namespace), target)
        self.process = ProcessStats()
        self.breakers = BreakerBoard.from_config(config.breakers)
        self._events = events
        self._crashes: deque[float] = deque()
        self._random = random.Random()
        self._snapshots: dict[str, dict[str, Any]] = {}
        self.slots = {
            name: _Slot(name, service_class(name), self._context(name, redis)) for name in names
        }

    def _context(self, name: str, redis: Redis) -> ServiceContext:
        return ServiceContext(
            name,
            lambda: self.config,
            redis,
            self.pool,
            get_logger(f"dsa110d.services.{name}", service=name),
            ServiceMetrics(),
            self.breakers,
        )

    # ----------------------------------------------------------------- supervision

    def start(self, tg: TaskGroup) -> None:
        """One supervised task per service, plus one that announces READY when all started."""
        for slot in self.slots.values():
            tg.start_soon(self._supervise, slot, name=f"supervise {slot.name}")
        tg.start_soon(self._announce_ready)

    async def _announce_ready(self) -> None:
        for slot in self.slots.values():
            await slot.started.wait()
        await self._events.send(("ready", ""))

    async def _supervise(self, slot: _Slot) -> None:
        attempt = 0
        while not self.stopping:
            began = time.monotonic()
            error = await self._run_once(slot)
            if self.stopping:
                break
            if slot.restart_requested:  # an operator's restart: immediate, not a crash
                slot.restart_requested, attempt = False, 0
                log.info("service_restarted", service=slot.name, by="control")
                continue
            slot.restarts += 1
            slot.last_error = error
            if time.monotonic() - began > self.config.supervisor.window_sec:
                attempt = 0  # it ran well for a while: start the backoff afresh
            if not self._within_intensity():
                sup = self.config.supervisor
                reason = (
                    f"restart intensity exceeded: more than {sup.max_restarts} crashes in "
                    f"{sup.window_sec:g} s (supervisor.max_restarts / window_sec); "
                    f"last: service {slot.name}: {error}"
                )
                log.error("giving_up", reason=reason)
                await self._events.send(("fatal", reason))
                break
            delay = RetryPolicy(
                base_delay_sec=self.config.supervisor.restart_base_delay_sec,
                max_delay_sec=self.config.supervisor.restart_max_delay_sec,
                min_fraction=RESTART_MIN_FRACTION,
            ).delay(attempt + 1, self._random.random)
            attempt += 1
            slot.state = "backoff"
            log.warning("service_restarting", service=slot.name, delay_sec=round(delay, 3))
            await slot.ctx.sleep(delay)
        slot.state = "stopped"
        slot.started.set()  # never hold READY for a service that will not start
        slot.done.set()

    async def _run_once(self, slot: _Slot) -> str:
        """Start and run a fresh instance until it ends; '' or the crash description."""
        slot.service = slot.cls()
        slot.state = "starting"
        error = ""
        with anyio.CancelScope() as scope:
            slot.scope = scope
            try:
                await slot.service.start(slot.ctx)
                slot.state = "running"
                slot.started.set()
                await slot.service.run(slot.ctx)
                if not slot.ctx.stopping.is_set():
                    error = "run() returned while the daemon was not stopping"
                    log.error("service_crashed", service=slot.name, error=error)
            except Exception as exc:
                error = describe(exc)
                log.error("service_crashed", service=slot.name, error=error, exc_info=True)
        slot.scope = None
        if scope.cancelled_caught and not error:
            error = "cancelled"
        await self._stop_hook(slot)
        return error

    async def _stop_hook(self, slot: _Slot) -> None:
        if slot.service is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_HOOK_TIMEOUT_SEC):
            try:
                await slot.service.stop(slot.ctx)
            except Exception as exc:
                log.warning("service_stop_failed", service=slot.name, error=str(exc))

    def _within_intensity(self) -> bool:
        """Record a crash; False once more than max_restarts fall within window_sec."""
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.config.supervisor.window_sec:
            self._crashes.popleft()
        return len(self._crashes) <= self.config.supervisor.max_restarts

    def crashes_in_window(self) -> int:
        """Crashes within ``supervisor.window_sec`` now (the restart-intensity alert)."""
        now = time.monotonic()
        return sum(1 for t in self._crashes if now - t <= self.config.supervisor.window_sec)

    def start_upkeep(self, tg: TaskGroup, redis: Redis) -> None:
        """The alert rules and housekeeping, each a periodic task that never kills the daemon."""
        engine = AlertEngine(
            lambda: self.config, redis, self.crashes_in_window, breakers=self.breakers
        )
        tg.start_soon(engine.run, name="alerts")
        tg.start_soon(housekeeping_loop, lambda: self.config, redis, name="housekeeping")

    async def shutdown(self) -> None:
        """Stop taking work; wait the grace period for in-flight work; then abandon it."""
        self.stopping = True
        for slot in self.slots.values():
            slot.ctx.stopping.set()
            slot.ctx.resume()
        grace = self.config.supervisor.shutdown_grace_sec
        with anyio.move_on_after(grace):
            for slot in self.slots.values():
                await slot.done.wait()
        for slot in self.slots.values():
            if not slot.done.is_set() and slot.scope is not None:
                log.warning("abandoning_work", service=slot.name, grace_sec=grace)
                slot.scope.cancel()
        with anyio.move_on_after(STOP_HOOK_TIMEOUT_SEC + 1):
            for slot in self.slots.values():
                await slot.done.wait()

    # ----------------------------------------------------------------- health and heartbeats

    def slot_health(self, slot: _Slot) -> HealthReport:
        """The service's own report, overridden by what the manager sees."""
        ttl = self.config.supervisor.registry_ttl_sec
        age = time.monotonic() - slot.ctx.last_beat
        if self.stopping:
            return HealthReport(Health.STOPPING, "shutting down")
        if age > ttl:
            return HealthReport(Health.UNHEALTHY, f"no heartbeat for {age:.0f} s (stuck?)")
        if slot.state == "backoff":
            return HealthReport(Health.DEGRADED, f"restarting after a crash: {slot.last_error}")
        if slot.state != "running" or slot.service is None:
            return HealthReport(Health.DEGRADED, slot.state)
        if slot.ctx.paused:
            return HealthReport(Health.DEGRADED, "paused by an operator")
        try:
            report = slot.service.health()
        except Exception as exc:
            return HealthReport(Health.UNHEALTHY, f"health() raised {describe(exc)}")
        if report.health is Health.HEALTHY and self.server_problem:
            return HealthReport(Health.DEGRADED, self.server_problem)
        tripped = self.breakers.trouble(slot.name)
        if report.health is Health.HEALTHY and tripped:
            return HealthReport(Health.DEGRADED, tripped)
        deaths = self.pool.recent_deaths()
        if report.health is Health.HEALTHY and deaths >= DEATHS_DEGRADED:
            return HealthReport(Health.DEGRADED, f"{deaths} worker processes died recently")
        return report

    def health(self) -> HealthReport:
        """The daemon's health: the worst of its services'."""
        return worst([(s.name, self.slot_health(s)) for s in self.slots.values()])

    def fresh(self) -> bool:
        """Every service beat within the registry TTL (the condition for WATCHDOG=1)."""
        limit = self.config.supervisor.registry_ttl_sec
        now = time.monotonic()
        return all(now - s.ctx.last_beat <= limit for s in self.slots.values())

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """The latest per-service snapshot (read by the Prometheus thread)."""
        return self._snapshots

    def _entry(self, slot: _Slot, process: Mapping[str, float]) -> RegistryEntry:
        report = self.slot_health(slot)
        metrics = {**slot.ctx.metrics.snapshot(), "process": dict(process)}
        metrics["restarts"] = slot.restarts
        metrics["breakers"] = {b.name: b.state.value for b in self.breakers.snapshots()}
        self._snapshots[slot.name] = {
            "metrics": metrics,
            "restarts": slot.restarts,
            "severity": report.health.severity,
        }
        state = "paused" if slot.ctx.paused and slot.state == "running" else slot.state
        return RegistryEntry(
            host=self.host,
            pid=self.pid,
            service=slot.name,
            health=report.health.name,
            reason=report.reason,
            started_at=self.started_at,
            version=__version__,
            state="stopping" if self.stopping else state,
            updated_at=_now_iso(),
            metrics=metrics,
        )

    async def publish_heartbeats(self) -> None:
        """One registry entry per service; an unreachable server degrades, never crashes.

        Through the ``state_server`` breaker: during an outage the heartbeats fail fast
        instead of each waiting out the connection timeouts, and one probe finds the server
        back."""
        process = self.process.snapshot()
        ttl = self.config.supervisor.registry_ttl_sec
        breaker = state_server_breaker(self.breakers, self.config)

        async def publish() -> None:
            for slot in self.slots.values():
                await self.registry.publish(self._entry(slot, process), ttl)

        try:
            await breaker.call(publish)
        except CircuitOpenError:
            self.server_problem = "state server unreachable"
        except StateError as exc:
            if not self.server_problem:
                log.warning("heartbeat_failed", error=str(exc))
            self.server_problem = "state server unreachable"
        else:
            if self.server_problem:
                log.info("heartbeat_recovered")
            self.server_problem = ""

    async def deregister(self) -> None:
        with contextlib.suppress(StateError):
            for slot in self.slots.values():
                await self.registry.remove(self.host, self.pid, slot.name)

    def status_line(self) -> str:
        """One line for systemd's STATUS=: health, work done, backlog."""
        report = self.health()
        processed = sum(s.ctx.metrics.processed for s in self.slots.values())
        failed = sum(s.ctx.metrics.failed for s in self.slots.values())
        backlog = sum(s.ctx.metrics.backlog for s in self.slots.values())
        counters: dict[str, int] = {}
        for slot in self.slots.values():
            for key, value in slot.ctx.metrics.counters.items():
                counters[key] = counters.get(key, 0) + value
        done = "".join(f", {k} {v}" for k, v in sorted(counters.items()))
        reason = f" ({report.reason})" if report.reason else ""
        return (
            f"{report.health.name}{reason}; processed {processed}, failed {failed}"
            f"{done}; backlog {backlog}"
        )

    async def heartbeat_loop(self, notify: Notifier) -> None:
        """Registry entries and STATUS= every heartbeat interval; a fault here never kills
        the daemon (it shows as a stale registry entry instead)."""
        while True:
            try:
                await self.publish_heartbeats()
                notify.status(self.status_line())
            except Exception as exc:
                log.error("heartbeat_error", error=describe(exc), exc_info=True)
            await anyio.sleep(self.config.supervisor.heartbeat_interval_sec)

    async def control_loop(self) -> None:
        """Listen for control commands; an unreachable server means retry, never a crash.

        Each message is its own fault boundary (ControlChannel.serve and on_control): what
        reaches this loop is the server's fault, or a bug of the listener; either way the
        daemon listens again after a backoff, because this task is not supervised and its
        end would be the daemon's.
        """
        failures = 0
        while True:
            try:
                await self.control.serve(self.on_control)
            except Exception as exc:
                failures += 1
                delay = CONTROL_RETRY.delay(failures + 1, self._random.random)
                event = "control_unavailable" if is_service_fault(exc) else "control_error"
                log.warning(event, error=describe(exc), retry_in_sec=round(delay, 2))
                await anyio.sleep(delay)

    async def watchdog_loop(self, notify: Notifier, period: float) -> None:
        """WATCHDOG=1 from the event loop, only while every service heartbeat is fresh."""
        withheld = False
        while True:
            if self.fresh():
                notify.watchdog()
                withheld = False
            elif not withheld:
                log.error("watchdog_withheld", reason=self.health().reason)
                withheld = True
            await anyio.sleep(period)

    # ----------------------------------------------------------------- control and reload

    async def on_control(self, command: ControlCommand | MessageError) -> None:
        """Act on one control command addressed to this daemon: the fault boundary of one
        control message. A malformed message, or any fault acting on it that is not the
        service's, is one ``control_rejected`` line; the daemon goes on listening."""
        if isinstance(command, MessageError):
            log.warning("control_rejected", error=describe(command))
            return
        try:
            await self._act(command)
        except Exception as exc:
            if is_service_fault(exc):
                raise
            log.warning(
                "control_rejected", command=command.id, action=command.action, error=describe(exc)
            )

    async def _act(self, command: ControlCommand) -> None:
        if not command.matches(self.host, self.pid):
            return
        names = list(self.slots) if command.service == ANY else [command.service]
        slots = [self.slots[n] for n in names if n in self.slots]
        if command.action == "status":
            await self.publish_heartbeats()
        for slot in slots:
            if command.action == "pause":
                slot.ctx.pause()
            elif command.action == "resume":
                slot.ctx.resume()
            elif command.action == "restart" and slot.scope is not None:
                slot.restart_requested = True
                slot.scope.cancel()
        if slots or command.action == "status":
            log.info("control", action=command.action, services=[s.name for s in slots])
            await self.publish_heartbeats()

    def reload(self, new: Config) -> None:
        """Adopt the reloadable sections of ``new``; log what changed and what needs a restart."""
        changes = reloadable_changes(self.config, new)
        fixed = [
            name
            for name in type(new).model_fields
            if name not in (*RELOADABLE_SECTIONS, "env")
            and getattr(new, name) != getattr(self.config, name)
        ]
        self.config = self.config.model_copy(
            update={section: getattr(new, section) for section in RELOADABLE_SECTIONS}
        )
        if "logging.level" in changes:
            logs.set_level(self.config.logging.level)
        log.info(
            "reloaded",
            changed={key: {"old": old, "new": value} for key, (old, value) in changes.items()},
            needs_restart=fixed,
        )


# --------------------------------------------------------------------------- the lifecycle


async def run_daemon(config: Config, services: list[str], reload: Reloader | None = None) -> int:
    """Run the chosen services until SIGTERM/SIGINT (exit 0) or too many crashes (exit 1).

    ``reload`` re-reads the configuration file on SIGHUP (None: SIGHUP only logs).
    """
    notify = Notifier.from_environ()
    names = enabled_services(config, services)
    log.info("starting", services=names, server=describe_target(config), version=__version__)
    send, events = anyio.create_memory_object_stream[Event](16)
    exit_code = EXIT_FAILED
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with (
                connected(config) as redis,
                WorkerPool(
                    config.supervisor.workers,
                    _worker_modules(names),
                    beat_sec=_beat_sec(config),
                    idle_sec=config.supervisor.worker_idle_sec or None,
                ) as pool,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_forward_signals, signals, send)
                manager = ServiceManager(config, redis, pool, names, send)
                manager.start(tg)
                heartbeats, heartbeats_done = anyio.CancelScope(), anyio.Event()
                tg.start_soon(_heartbeats, manager, notify, heartbeats, heartbeats_done)
                manager.start_upkeep(tg, redis)
                exit_code = await _serve(manager, events, tg, notify, reload)
                notify.stopping(f"STOPPING; {manager.status_line()}")
                log.info("stopping", exit_code=exit_code)
                await manager.shutdown()
                # no heartbeat may land after the deregistration: stop them and wait first
                heartbeats.cancel()
                await heartbeats_done.wait()
                await manager.deregister()
                tg.cancel_scope.cancel()
    finally:
        notify.close()
    log.info("stopped", exit_code=exit_code)
    return exit_code


async def _heartbeats(
    manager: ServiceManager, notify: Notifier, scope: anyio.CancelScope, done: anyio.Event
) -> None:
    try:
        with scope:
            await manager.heartbeat_loop(notify)
    finally:
        done.set()


async def _serve(
    manager: ServiceManager,
    events: MemoryObjectReceiveStream[Event],
    tg: TaskGroup,
    notify: Notifier,
    reload: Reloader | None,
) -> int:
    """READY once every service started; then reload on SIGHUP until a stop or a fatal event."""
    stop_metrics: Callable[[], None] | None = None
    try:
        async for kind, detail in events:
            if kind == "ready":
                notify.ready(manager.status_line())
                log.info("ready", services=list(manager.slots), health=manager.health().health.name)
                period = watchdog_period()
                if period is not None:
                    tg.start_soon(manager.watchdog_loop, notify, period)
                tg.start_soon(manager.control_loop)
                stop_metrics = _start_metrics(manager)
            elif kind == "reload":
                notify.reloading()
                _reload(manager, reload)
                notify.ready(manager.status_line())
            elif kind == "stop":
                log.info("signal", signal=detail)
                return EXIT_OK
            elif kind == "fatal":
                return EXIT_FAILED
        return EXIT_FAILED  # pragma: no cover - the stream never closes while we read it
    finally:
        if stop_metrics is not None:
            await anyio.to_thread.run_sync(stop_metrics)


def _reload(manager: ServiceManager, reload: Reloader | None) -> None:
    if reload is None:
        log.warning("reload_unavailable", reason="no configuration file to re-read")
        return
    try:
        new = reload()
    except DSA110Error as exc:
        log.error("reload_rejected", reason=str(exc), kept="the previous settings")
        return
    manager.reload(new)


def _start_metrics(manager: ServiceManager) -> Callable[[], None] | None:
    port = manager.config.metrics.port
    if port is None:
        return None
    collector = PrometheusCollector(
        manager.snapshots, manager.process.snapshot, manager.breakers.snapshots
    )
    try:
        stop = serve_prometheus(manager.config.metrics.host, port, collector)
    except OSError as exc:
        log.error("metrics_unavailable", port=port, error=str(exc))
        return None
    log.info("metrics_serving", host=manager.config.metrics.host, port=port)
    return stop


async def _forward_signals(signals: Any, send: MemoryObjectSendStream[Event]) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        await send.send(("reload" if signum == signal.SIGHUP else "stop", name))


def _worker_modules(names: list[str]) -> list[str]:
    """What every chosen service wants imported in the workers, each module once."""
    return sorted({m for name in names for m in service_class(name).worker_modules})


def _beat_sec(config: Config) -> float:
    return max(0.05, config.supervisor.registry_ttl_sec / 3)


__all__ = ["ServiceManager", "run_daemon"]
