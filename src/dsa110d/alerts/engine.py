"""The alert engine: the ServiceManager's periodic evaluation of the rules.

Every daemon runs one. Each pass gathers :class:`~dsa110d.alerts.rules.Facts` (the shared
registry, the streams, the set records, the candidates, this host's disks and this daemon's
crash count), evaluates the rules, and reports each condition to the
:class:`~dsa110d.state.alerts.AlertStore`, whose scripts decide atomically who sends what:
so N daemons seeing one condition send one alert. A pass that cannot reach the server is
skipped (the heartbeat already makes the services DEGRADED).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from dsa110d.alerts import rules
from dsa110d.alerts.sinks import AlertSinks
from dsa110d.config import Config
from dsa110d.errors import CircuitOpenError, StateError, describe
from dsa110d.logs import get_logger
from dsa110d.resilience import BreakerBoard, state_server_breaker
from dsa110d.state.alerts import (
    AlertEvent,
    AlertStore,
    Condition,
    count_members,
    incomplete_sets,
    queue_views,
)
from dsa110d.state.blocks import Blocks, BlockState
from dsa110d.state.connection import Redis, describe_target
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry

log = get_logger("dsa110d.alerts")
DISK_TIMEOUT_SEC = 10.0  # a hung network mount must not hang the pass
FLAGGED_BLOCKS_CHECKED = 50
"""The newest blocks looked at for a flagged fraction above flagging.alert_flag_fraction."""
FAST_ALERTS_CHECKED = 100
"""The newest fast alerts looked at for a notice not yet sent (an alert or its verdict)."""


def disk_views(paths: list[Path]) -> list[rules.DiskView]:
    """Free space of each existing data root (blocking: run in a thread)."""
    views = []
    for path in dict.fromkeys(paths):
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        try:  # a root not created yet will be on its nearest existing parent's filesystem
            usage = shutil.disk_usage(existing or path)
        except OSError:
            continue
        views.append(rules.DiskView(str(path), usage.free, usage.total))
    return views


class AlertEngine:
    """Evaluate the rules every ``alerts.interval_sec`` and deliver what this daemon claims."""

    def __init__(
        self,
        config: Callable[[], Config],
        redis: Redis,
        crashes_in_window: Callable[[], int] = lambda: 0,
        *,
        host: str | None = None,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
        sinks: AlertSinks | None = None,
        breakers: BreakerBoard | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self.crashes_in_window = crashes_in_window
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.clock = clock
        cfg = config()
        self.keys = Keys(cfg.redis.namespace)
        self.target = describe_target(cfg)
        self.store = AlertStore(
            redis, self.keys, host=self.host, stream_max_len=cfg.alerts.stream_max_len,
            target=self.target,
        )  # fmt: skip
        self.breakers = breakers or BreakerBoard.from_config(cfg.breakers)
        self.sinks = sinks or AlertSinks(lambda: self.config().alerts, self.breakers)
        self._failing = False

    async def run(self) -> None:
        """Evaluate until cancelled; the sinks drain beside it."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.sinks.run)
            while True:
                cfg = self.config().alerts
                if cfg.enabled:
                    await self._pass()
                await anyio.sleep(cfg.interval_sec)

    async def _pass(self) -> None:
        server = state_server_breaker(self.breakers, self.config())
        try:
            await server.call(self.evaluate_once)
        except CircuitOpenError:
            self._failing = True  # the outage is already logged and shown in health
        except StateError as exc:
            if not self._failing:
                log.warning("alerts_unavailable", error=str(exc))
            self._failing = True
        except Exception as exc:  # a bug in a rule must not take the daemon down
            log.error("alerts_error", error=describe(exc), exc_info=True)
        else:
            if self._failing:
                log.info("alerts_recovered")
            self._failing = False

    async def evaluate_once(self) -> list[AlertEvent]:
        """One pass: the events this daemon sent (also handed to the sinks)."""
        config = self.config()
        now = self.clock()
        facts = await self.gather(config, now)
        sent: list[AlertEvent] = []
        seen: set[str] = set()
        for condition in rules.evaluate(facts, config):
            seen.add(condition.fingerprint)
            event = await self.store.observe(condition, now, config.alerts.repeat_interval_sec)
            if event is not None:
                sent.append(event)
        sent += await self.store.resolve_unseen(seen, now, config.alerts.resolve_after_sec)
        if config.alerts.candidates:
            notice = await self._candidates(now)
            if notice is not None:
                sent.append(notice)
        sent += await self._flagged_blocks(config, now)
        sent += await self._fast_alerts(now)
        for event in sent:
            self.sinks.deliver(event)
        return sent

    async def gather(self, config: Config, now: float) -> rules.Facts:
        """What the rules look at, read once."""
        timeout = config.services.hdf5_watcher.processing_timeout_sec
        disks: list[rules.DiskView] = []
        with anyio.move_on_after(DISK_TIMEOUT_SEC):
            disks = await anyio.to_thread.run_sync(
                disk_views, list(config.paths.data_roots()), abandon_on_cancel=True
            )
        return rules.Facts(
            host=self.host,
            pid=self.pid,
            registry=await Registry(self.redis, self.keys, self.target).entries(),
            queues=await queue_views(self.redis, self.keys, now, self.target),
            incomplete_sets=await incomplete_sets(self.redis, self.keys, now, timeout, self.target),
            disks=disks,
            crashes_in_window=self.crashes_in_window(),
        )

    async def _flagged_blocks(self, config: Config, now: float) -> list[AlertEvent]:
        """A warning notice (once across daemons) for each recent block run mostly flagged."""
        records = await Blocks(self.redis, self.keys, self.target).blocks(
            limit=FLAGGED_BLOCKS_CHECKED
        )
        done = [r for r in records if r.state is BlockState.PROCESSED]
        events = []
        for condition in rules.flagged_block_conditions(done, config):
            event = await self.store.notice(condition, now)
            if event is not None:
                events.append(event)
        return events

    async def _fast_alerts(self, now: float) -> list[AlertEvent]:
        """A notice (once across daemons) for each new fast alert and each verdict on one."""
        records = await FastAlerts(self.redis, self.keys, self.target).latest(FAST_ALERTS_CHECKED)
        events = []
        for condition in rules.fast_alert_conditions(records):
            event = await self.store.notice(condition, now)
            if event is not None:
                events.append(event)
        return events

    async def _candidates(self, now: float) -> AlertEvent | None:
        """An info notice when the analyzer's candidate count grew (once across daemons)."""
        count = await count_members(self.redis, self.keys.candidates(), self.target)
        previous = await self.store.advance_mark("candidates", count)
        if previous is None or (previous < 0 and count == 0):
            return None
        new = count - max(previous, 0)
        condition = Condition(
            f"candidates:{int(now * 1000)}",
            "variability_candidates",
            "info",
            f"{new} new variability candidates ({count} in all; dsa110ctl candidates)",
            details={"new": new, "total": count},
        )
        return await self.store.notice(condition, now)
