"""``dsa110ctl status`` and ``health``: what every daemon on every host last said about itself.

The rows come from the service registry (:mod:`dsa110d.state.registry`) right after asking every
daemon to publish a fresh heartbeat (:func:`~dsa110d.state.control.fresh_status`). A daemon that
died without cleaning up drops out once its entry's TTL (``supervisor.registry_ttl_sec``) runs out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from dsa110d.config import Config
from dsa110d.operations.session import attach
from dsa110d.state.connection import describe_target
from dsa110d.state.control import fresh_status
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry

FRESH_WAIT_SEC = 0.5  # how long daemons get to answer the status request

# Exit codes of ``dsa110ctl health`` (the monitoring-plugin convention: 3 is "cannot tell").
HEALTH_EXIT = {"HEALTHY": 0, "DEGRADED": 1, "UNHEALTHY": 2}
# A daemon that is shutting down still works but will not for long.
PROBE_HEALTH = {"HEALTHY": "HEALTHY", "DEGRADED": "DEGRADED", "STOPPING": "DEGRADED"}


@dataclass(frozen=True)
class ServiceStatus:
    """One service of one daemon, as ``dsa110ctl status`` shows it."""

    host: str
    pid: int
    service: str
    state: str
    health: str
    reason: str
    uptime_sec: float | None
    heartbeat_age_sec: float | None
    processed: int
    failed: int
    queue_lag_sec: float
    backlog: int
    restarts: int
    version: str
    duration_sec: dict[str, float] = field(default_factory=dict)
    """Recent job duration quantiles (``p50``, ``p90``, ``p99``)."""
    counters: dict[str, int] = field(default_factory=dict)
    """Domain counts (``sets``, ``blocks``, ``runs``...)."""

    @classmethod
    def from_entry(cls, entry: RegistryEntry, now: float) -> ServiceStatus:
        metrics = entry.metrics
        return cls(
            host=entry.host,
            pid=entry.pid,
            service=entry.service,
            state=entry.state,
            health=entry.health,
            reason=entry.reason,
            uptime_sec=_age(entry.started_at, now),
            heartbeat_age_sec=_age(entry.updated_at, now),
            processed=int(metrics.get("processed", 0)),
            failed=int(metrics.get("failed", 0)),
            queue_lag_sec=float(metrics.get("queue_lag_sec", 0.0)),
            backlog=int(metrics.get("backlog", 0)),
            restarts=int(metrics.get("restarts", 0)),
            version=entry.version,
            duration_sec={k: float(v) for k, v in (metrics.get("duration_sec") or {}).items()},
            counters={k: int(v) for k, v in (metrics.get("counters") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HealthSummary:
    """The pipeline's health for a monitoring probe: the worst service wins."""

    health: str
    reason: str
    services: tuple[ServiceStatus, ...]

    @property
    def exit_code(self) -> int:
        return HEALTH_EXIT[self.health]

    def to_dict(self) -> dict[str, Any]:
        return {
            "health": self.health,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "services": [s.to_dict() for s in self.services],
        }


def _age(stamp: str, now: float) -> float | None:
    """Seconds since an ISO-8601 time stamp (None when missing or unreadable)."""
    if not stamp:
        return None
    try:
        return max(0.0, now - datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return None


async def service_status(
    config: Config,
    service: str | None = None,
    wait_sec: float = FRESH_WAIT_SEC,
    *,
    fresh: bool = True,
) -> list[ServiceStatus]:
    """Every registered service (or only ``service``), freshest data first asked for.

    ``fresh=False`` reads the registry as the last heartbeats left it, without asking every
    daemon for a new one (what the web console's refresh does: it polls, and the heartbeats
    come every ``supervisor.heartbeat_interval_sec`` anyway).
    An embedded configuration whose server is not running has no daemons: an empty list.
    """
    async with attach(config) as redis:
        if redis is None:
            return []
        keys = Keys(config.redis.namespace)
        target = describe_target(config)
        if fresh:
            entries = await fresh_status(redis, keys, wait_sec, target)
        else:
            entries = await Registry(redis, keys, target).entries()
    now = time.time()
    rows = [ServiceStatus.from_entry(e, now) for e in entries]
    return [r for r in rows if service in (None, "all", r.service)]


def summarize(statuses: list[ServiceStatus], where: str) -> HealthSummary:
    """Healthy only when some service is registered and every one is healthy."""
    if not statuses:
        return HealthSummary("UNHEALTHY", f"no dsa110d daemon is running ({where})", ())
    ranked = [
        (list(HEALTH_EXIT).index(PROBE_HEALTH.get(s.health, "UNHEALTHY")), s) for s in statuses
    ]
    rank, worst = max(ranked, key=lambda item: item[0])
    health = list(HEALTH_EXIT)[rank]
    if health == "HEALTHY":
        return HealthSummary(health, f"{len(statuses)} services healthy", tuple(statuses))
    reason = f"{worst.service}@{worst.host}:{worst.pid}: {worst.health.lower()}"
    if worst.reason:
        reason += f" ({worst.reason})"
    return HealthSummary(health, reason, tuple(statuses))


def registry_location(config: Config) -> str:
    """Where ``status`` looked, for the line it prints when nothing is registered."""
    return f"namespace {config.redis.namespace!r} on {describe_target(config)}"


async def pipeline_health(config: Config, wait_sec: float = FRESH_WAIT_SEC) -> HealthSummary:
    """The worst health of every registered service; UNHEALTHY when none is registered."""
    return summarize(await service_status(config, None, wait_sec), registry_location(config))
