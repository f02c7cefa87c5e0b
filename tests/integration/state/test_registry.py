"""The service registry on a real server: entries are readable and vanish after their TTL."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry

pytestmark = pytest.mark.anyio


def entry(service: str, pid: int = 42) -> RegistryEntry:
    return RegistryEntry(
        host="corr01",
        pid=pid,
        service=service,
        health="DEGRADED",
        reason="backlog 60 > 50",
        started_at="2026-11-26T12:00:00+00:00",
        version="0.1.0",
        metrics={"processed": 3, "duration_sec": {"p50": 1.5}},
    )


async def test_entries_round_trip_and_vanish_after_their_ttl(
    config: Config, redis: aioredis.Redis
) -> None:
    registry = Registry(redis, Keys(config.redis.namespace))
    await registry.publish(entry("watcher"), ttl_sec=0.4)
    await registry.publish(entry("processor"), ttl_sec=5)
    found = await registry.entries()
    assert [e.service for e in found] == ["processor", "watcher"]
    assert found[1] == entry("watcher")
    await anyio.sleep(0.6)
    assert [e.service for e in await registry.entries()] == ["processor"]
    await registry.remove("corr01", 42, "processor")
    assert await registry.entries() == []


async def test_a_refreshed_entry_stays(config: Config, redis: aioredis.Redis) -> None:
    registry = Registry(redis, Keys(config.redis.namespace))
    for _ in range(4):
        await registry.publish(entry("analyzer"), ttl_sec=0.3)
        await anyio.sleep(0.15)
    assert [e.service for e in await registry.entries()] == ["analyzer"]
