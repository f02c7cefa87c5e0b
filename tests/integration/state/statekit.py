"""Helpers of the state-layer tests (imported by tests and by their subprocess scripts)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import redis.asyncio as aioredis

from dsa110d.config import Config, load_config
from dsa110d.messages import Message, MessageType, Producer, new_message
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.streams import ReliableStream

FAST = {
    "streams__heartbeat_interval_sec": 0.2,
    "streams__heartbeat_ttl_sec": 0.6,
    "streams__read_block_ms": 100,
    "retry__max_attempts": 3,
    "retry__base_delay_sec": 0.05,
    "retry__max_delay_sec": 0.2,
    "leases__ttl_sec": 0.6,
    "leases__renew_interval_sec": 0.2,
}
SERVICES_YAML = Path(__file__).resolve().parents[3] / "etc" / "dsa110" / "services.yaml"
PRODUCER = Producer("test-host", 1, "tests")


def fast_config(tmp_path: Path, url: str, **overrides: object) -> Config:
    """Like the root ``make_config`` (own namespace, paths in tmp_path) with fast timings."""
    environ = {
        "DSA110__PATHS__STATE_DIR": str(tmp_path / "state"),
        "DSA110__PATHS__LOG_DIR": str(tmp_path / "logs"),
        "DSA110__REDIS__NAMESPACE": f"t-{uuid.uuid4().hex[:12]}",
        "DSA110__REDIS__EMBEDDED": "false",
        "DSA110__REDIS__URL": url,
    }
    for key, value in {**FAST, **overrides}.items():
        environ["DSA110__" + key.upper()] = str(value)
    return load_config(SERVICES_YAML, "testing", environ)


def make_stream(redis: aioredis.Redis, config: Config, group: str = "workers") -> ReliableStream:
    return ReliableStream(
        redis,
        Keys(config.redis.namespace),
        MessageType.HDF5_PROCESSING,
        group,
        config.streams,
        config.retry,
    )


def hdf5_message(**payload: object) -> Message:
    return new_message(MessageType.HDF5_PROCESSING, dict(payload), PRODUCER)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.02
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(step)


@asynccontextmanager
async def running(*consumers: StreamConsumer) -> AsyncIterator[None]:
    """Run consumers in the background for the duration of the block."""
    async with anyio.create_task_group() as tg:
        for consumer in consumers:
            await tg.start(consumer.run)
        yield
        tg.cancel_scope.cancel()


async def apply_effect(client: aioredis.Redis, keys: Keys, message_id: str, by: str) -> bool:
    """An idempotent effect keyed by message id; counts how often it really took effect."""
    record = keys.set_record(message_id)
    if await client.hsetnx(record, "done_by", by):  # type: ignore[misc]
        await client.hincrby(record, "effects", 1)  # type: ignore[misc]
        return True
    return False


async def effects(client: aioredis.Redis, keys: Keys, message_id: str) -> tuple[int, str | None]:
    """(how many times the effect took place, who did it)."""
    record = keys.set_record(message_id)
    count, by = await client.hmget(record, ["effects", "done_by"])  # type: ignore[misc]
    return int(count or 0), by
