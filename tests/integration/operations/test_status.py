"""``status`` and ``health`` read the registry of a real server, in-process and as a program."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.operations.status import pipeline_health, service_status
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry
from tests.integration.operations.ctlkit import ctl

pytestmark = pytest.mark.anyio


def entry(
    service: str, health: str = "HEALTHY", reason: str = "", pid: int = 4242
) -> RegistryEntry:
    return RegistryEntry(
        host="corr01",
        pid=pid,
        service=service,
        health=health,
        reason=reason,
        started_at="2026-11-26T12:00:00+00:00",
        version="0.1.0",
        updated_at="2026-11-26T12:00:00+00:00",
        metrics={"processed": 7, "failed": 2, "queue_lag_sec": 12.5, "restarts": 1},
    )


async def publish(config: Config, redis: aioredis.Redis, *entries: RegistryEntry) -> None:
    registry = Registry(redis, Keys(config.redis.namespace))
    for one in entries:
        await registry.publish(one, ttl_sec=60)


async def test_status_reports_every_registered_service(
    config: Config, redis: aioredis.Redis
) -> None:
    await publish(config, redis, entry("watcher"), entry("processor", "DEGRADED", "backlog 60"))
    rows = await service_status(config, wait_sec=0)
    assert [(r.service, r.health) for r in rows] == [
        ("processor", "DEGRADED"),
        ("watcher", "HEALTHY"),
    ]
    processor = rows[0]
    assert (processor.processed, processor.failed, processor.restarts) == (7, 2, 1)
    assert processor.queue_lag_sec == 12.5
    assert processor.reason == "backlog 60"
    started = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()
    assert processor.uptime_sec == pytest.approx(time.time() - started, abs=5)
    assert [r.service for r in await service_status(config, "watcher", wait_sec=0)] == ["watcher"]


async def test_health_is_the_worst_service(config: Config, redis: aioredis.Redis) -> None:
    assert (await pipeline_health(config, wait_sec=0)).health == "UNHEALTHY"  # none registered
    await publish(config, redis, entry("watcher"))
    summary = await pipeline_health(config, wait_sec=0)
    assert (summary.health, summary.exit_code) == ("HEALTHY", 0)
    await publish(config, redis, entry("analyzer", "DEGRADED", "circuit redis open"))
    summary = await pipeline_health(config, wait_sec=0)
    assert (summary.health, summary.exit_code) == ("DEGRADED", 1)
    assert "analyzer" in summary.reason and "circuit redis open" in summary.reason
    await publish(config, redis, entry("processor", "UNHEALTHY", "worker pool dying"))
    assert (await pipeline_health(config, wait_sec=0)).exit_code == 2


async def test_the_programs_print_json_and_exit_with_the_health(
    config: Config, redis: aioredis.Redis
) -> None:
    none = ctl(config, "health")
    assert none.returncode == 2, none.stderr
    assert none.stdout.startswith("UNHEALTHY: no dsa110d daemon is running")
    empty = ctl(config, "status")
    assert empty.returncode == 0 and "no dsa110d daemon is running" in empty.stdout

    await publish(config, redis, entry("watcher"), entry("processor", "DEGRADED", "backlog 60"))
    shown = ctl(config, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert {r["service"]: r["health"] for r in rows} == {
        "watcher": "HEALTHY",
        "processor": "DEGRADED",
    }
    table = ctl(config, "status")
    assert "processor" in table.stdout and "backlog 60" in table.stdout
    health = ctl(config, "health", "--json")
    assert health.returncode == 1
    assert json.loads(health.stdout)["health"] == "DEGRADED"
