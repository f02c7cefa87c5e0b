"""The pipeline at a glance (the console's front page): services per host with their health,
the pipeline's lag, sets per hour, the real-time factor and the alerts firing.

Everything is composed from the other operations (status, queues, records, alerts); nothing
here reads the state server by itself.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from dsa110d.alerts.report import alert_rows
from dsa110d.config import Config
from dsa110d.operations.queues import QueueRow, queue_stats
from dsa110d.operations.records import newest_set_ids
from dsa110d.operations.status import ServiceStatus, service_status, summarize

SET_CADENCE_SEC = 24 * 12.884902
"""Seconds of sky per set: 24 integrations of 12.884902 s (science.constants.FILE_DURATION_S,
spelt out so that the console does not import the science package; a test pins them equal)."""
CONVERTER = "processor"
"""The service whose job durations are conversions (for the real-time factor)."""
HOURS_SHOWN = 24
SETS_READ = 400
"""Newest set records read for the sets-per-hour figure (a day is ~280 sets)."""


@dataclass(frozen=True)
class Overview:
    """The front page's figures."""

    generated_at: float
    health: str
    reason: str
    hosts: dict[str, list[dict[str, Any]]]
    """Host -> its services (``ServiceStatus`` fields)."""
    services: list[dict[str, Any]]
    """The same services as one list (host, pid, service order)."""
    queues: list[dict[str, Any]]
    """Every stream per consumer group (``QueueRow`` fields)."""
    lag_sec: float
    """The oldest waiting work anywhere: the largest service queue lag or pending entry age."""
    backlog: int
    sets_per_hour: list[dict[str, Any]]
    """``{"hour": epoch seconds, "sets": n}`` for the newest hours with sets, oldest first."""
    real_time_factor: float | None
    """Median conversion time over the set cadence (< 1: the converter keeps up); None before
    any conversion."""
    dead_letters: int
    alerts_firing: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sets_per_hour(set_ids: list[str], hours: int = HOURS_SHOWN) -> list[dict[str, Any]]:
    """Sets counted per UTC hour of their observation time (the set id), newest ``hours``."""
    counts: Counter[float] = Counter()
    for set_id in set_ids:
        try:
            when = datetime.strptime(set_id, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            continue
        counts[when.replace(minute=0, second=0).timestamp()] += 1
    newest = sorted(counts)[-hours:]
    return [{"hour": hour, "sets": counts[hour]} for hour in newest]


def real_time_factor(statuses: list[ServiceStatus]) -> float | None:
    medians = [
        s.duration_sec["p50"]
        for s in statuses
        if s.service == CONVERTER and s.duration_sec.get("p50")
    ]
    if not medians:
        return None
    return max(medians) / SET_CADENCE_SEC


def lag(statuses: list[ServiceStatus], queues: list[QueueRow]) -> float:
    ages = [s.queue_lag_sec for s in statuses]
    ages += [q.oldest_pending_age_sec or 0.0 for q in queues]
    return max(ages, default=0.0)


async def overview(config: Config) -> Overview:
    """The front page, from the registry as the heartbeats left it (no status round)."""
    statuses = await service_status(config, fresh=False)
    queues = await queue_stats(config)
    set_ids = await newest_set_ids(config, SETS_READ)
    firing = await alert_rows(config, True)
    summary = summarize(statuses, "the registry")
    hosts: dict[str, list[dict[str, Any]]] = {}
    for status in statuses:
        hosts.setdefault(status.host, []).append(status.to_dict())
    return Overview(
        generated_at=time.time(),
        health=summary.health,
        reason=summary.reason,
        hosts=hosts,
        services=[s.to_dict() for s in statuses],
        queues=[asdict(q) for q in queues],
        lag_sec=lag(statuses, queues),
        backlog=sum(s.backlog for s in statuses),
        sets_per_hour=sets_per_hour(set_ids),
        real_time_factor=real_time_factor(statuses),
        dead_letters=sum({q.message_type: q.dead_letters for q in queues}.values()),
        alerts_firing=firing,
    )
