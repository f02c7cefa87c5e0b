"""The daemon's lifecycle: :func:`run_daemon`.

It reads top to bottom: connect (the server answers), start the worker pool, start every
service's supervisor (:class:`~dsa110d.supervisor.ServiceManager`), READY once each service
finished its start-up, then react to events (SIGHUP: RELOADING, reload, READY; SIGTERM/SIGINT:
stop; restart intensity exceeded: stop and fail) and finally STOPPING, graceful shutdown within
``supervisor.shutdown_grace_sec``, exit.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dsa110d import __version__, catalogue
from dsa110d.config import Config
from dsa110d.errors import ConfigError, DSA110Error
from dsa110d.logs import get_logger
from dsa110d.metrics import PrometheusCollector, serve_prometheus
from dsa110d.notify import Notifier, watchdog_period
from dsa110d.services.base import service_class
from dsa110d.state.connection import connected, describe_target
from dsa110d.supervisor import Event, ServiceManager
from dsa110d.workers import WorkerPool

EXIT_OK = 0
EXIT_FAILED = 1

log = get_logger("dsa110d.supervisor")  # the daemon's lines keep the name they always had
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
