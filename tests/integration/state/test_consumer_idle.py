"""An idle consumer sleeps: with nothing to read it wakes for its blocking read
(``streams.read_block_ms``) and its heartbeat, not for the ack flusher (which used to wake
every ACK_FLUSH_SEC = 50 ms, twenty times a second, with nothing to ack); and an entry it
handles is still acked within ACK_FLUSH_SEC of the handler's return."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.stream_entries import Delivery
from tests.conftest import make_config
from tests.helpers.wakeups import COUNTING_BACKEND, settled, wakeups_during
from tests.integration.state.statekit import hdf5_message, make_stream, running, wait_until

pytestmark = pytest.mark.anyio

IDLE_WINDOW_SEC = 1.5
MAX_IDLE_WAKEUPS = 2
"""Over the window: a heartbeat or a read's reply at most; flushing every 50 ms would be 30."""


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return COUNTING_BACKEND


@pytest.fixture
def config(tmp_path: Path, server_url: str) -> Config:
    """The shipped defaults' timings (blocking read, heartbeat), not the tests' fast ones."""
    return make_config(
        tmp_path, server_url, streams__heartbeat_interval_sec=5, streams__heartbeat_ttl_sec=20
    )


async def test_idle_consumer_does_not_wake_to_flush_nothing(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.entry_id)

    consumer = StreamConsumer(stream, "idle-1", handler)
    async with running(consumer):
        await settled()  # its first round: group, heartbeat, recovery, blocking read
        wakeups = await wakeups_during(IDLE_WINDOW_SEC)
        assert wakeups <= MAX_IDLE_WAKEUPS, f"{wakeups} wake-ups in {IDLE_WINDOW_SEC} s idle"

        await stream.publish(hdf5_message(n=1))

        async def acked() -> bool:
            stats = await stream.stats()
            return bool(handled) and stats.pending == 0 and stats.undelivered == 0

        await wait_until(acked, timeout=2.0)
