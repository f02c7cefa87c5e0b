"""The state server restarted (AOF) mid-stream, and stopped for a while: nothing is lost, no
message is handled twice, and consumers resume by themselves. Each test runs its own embedded
server in a private state_dir so that it can stop and start it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import StateError
from dsa110d.state import embedded
from dsa110d.state.connection import connect
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.stream_entries import Delivery
from dsa110d.state.streams import ReliableStream
from tests.integration.state.statekit import (
    fast_config,
    hdf5_message,
    make_stream,
    running,
    wait_until,
)

pytestmark = pytest.mark.anyio
OUTAGE_SEC = 20.0  # the outage: many heartbeat TTLs and backoff rounds


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return tmp_path / "own-server"


@pytest.fixture
def own_config(tmp_path: Path, server_dir: Path) -> Config:
    server = embedded.ensure_server(server_dir)
    return fast_config(tmp_path, server.url)


@pytest.fixture
async def client(own_config: Config, server_dir: Path) -> AsyncIterator[aioredis.Redis]:
    redis = await connect(own_config)
    try:
        yield redis
    finally:
        await redis.aclose()
        embedded.stop_server(server_dir)


async def restart(server_dir: Path, down_for: float) -> None:
    await anyio.to_thread.run_sync(embedded.stop_server, server_dir)
    await anyio.sleep(down_for)
    await anyio.to_thread.run_sync(embedded.ensure_server, server_dir)


async def publish_patiently(stream: ReliableStream, n: int) -> None:
    """Publish event n, retrying through an outage; the dedup key makes retries harmless."""
    while True:
        try:
            await stream.publish(hdf5_message(n=n), dedup_key=f"event-{n}")
            return
        except StateError:
            await anyio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_restart_with_aof_mid_stream_loses_nothing_and_handles_each_once(
    client: aioredis.Redis, own_config: Config, server_dir: Path
) -> None:
    stream = make_stream(client, own_config)
    await stream.ensure_group()
    total = 300
    handled: Counter[int] = Counter()

    async def handler(delivery: Delivery) -> None:
        handled[delivery.message.payload["n"]] += 1

    consumers = [StreamConsumer(stream, f"c{i}", handler, batch=8) for i in range(2)]
    async with running(*consumers):
        for n in range(total):
            await publish_patiently(stream, n)
            if n == total // 3:
                await restart(server_dir, down_for=0.5)  # mid-stream, entries in flight
            await anyio.sleep(0.002)
        await wait_until(lambda: _handled_all(handled, total), 30)
        await wait_until(lambda: _settled(stream), 10)
    assert sum(c.counters.outages for c in consumers) >= 1  # the restart was felt
    assert handled == Counter(range(total))  # every event once: none lost, none twice
    stats = await stream.stats()
    assert (stats.length, stats.pending, stats.dead_letters) == (total, 0, 0)


@pytest.mark.timeout(60)
async def test_a_live_consumer_whose_heartbeat_lapsed_in_a_restart_keeps_its_entries(
    client: aioredis.Redis, own_config: Config, server_dir: Path
) -> None:
    """The restart outlasts the heartbeat TTL, so every heartbeat is gone when the server
    returns. The peer back first must not take what a live consumer has handled and not yet
    acked: that consumer renews within one heartbeat interval, and each entry is handled once."""
    streams = own_config.streams
    stream = make_stream(client, own_config)
    await stream.ensure_group()
    handled: Counter[int] = Counter()

    async def handler(delivery: Delivery) -> None:
        handled[delivery.message.payload["n"]] += 1

    # driven by hand: its acks wait for its next round (a whole batch is waiting by then)
    holder = StreamConsumer(stream, "holder", handler, batch=3)
    await stream.heartbeat("holder")
    for n in range(3):
        await stream.publish(hdf5_message(n=n))
    assert await holder.poll_once(block_ms=1) == 3
    peer = StreamConsumer(stream, "peer", handler)
    async with running(peer):
        await restart(server_dir, down_for=2 * streams.heartbeat_ttl_sec)
        assert not await client.exists(stream.heartbeat_key("holder"))
        await wait_until(lambda: _true(peer.connected and peer.counters.outages > 0), 10)
        # the holder's heartbeat task ticks up to one interval after the server's return
        await anyio.sleep(streams.heartbeat_interval_sec / 2)
        with anyio.move_on_after(3 * streams.heartbeat_ttl_sec):
            while True:
                await stream.heartbeat("holder")
                await anyio.sleep(streams.heartbeat_interval_sec)
        assert peer.counters.reclaimed == 0
        await holder.poll_once(block_ms=1)  # the holder's acks go out
        await stream.heartbeat("holder")
        await wait_until(lambda: _settled(stream), 10)
    assert handled == Counter(range(3))


@pytest.mark.timeout(90)
async def test_consumers_wait_out_a_stopped_server_and_resume_by_themselves(
    client: aioredis.Redis, own_config: Config, server_dir: Path
) -> None:
    stream = make_stream(client, own_config)
    await stream.ensure_group()
    handled: list[int] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.message.payload["n"])

    consumers = [StreamConsumer(stream, f"c{i}", handler) for i in range(2)]
    async with running(*consumers):
        await stream.publish(hdf5_message(n=0))
        await wait_until(lambda: _true(handled == [0]), 10)
        await anyio.to_thread.run_sync(embedded.stop_server, server_dir)
        await anyio.sleep(OUTAGE_SEC)
        assert not any(c.connected for c in consumers)
        assert all(c.counters.outages >= 2 for c in consumers)  # kept retrying, still alive
        await anyio.to_thread.run_sync(embedded.ensure_server, server_dir)
        await publish_patiently(stream, 1)
        await wait_until(lambda: _true(handled == [0, 1]), 15)
        await wait_until(lambda: _true(all(c.connected for c in consumers)), 10)
        await wait_until(lambda: _settled(stream), 10)


async def _true(value: bool) -> bool:
    return value


async def _handled_all(handled: Counter[int], total: int) -> bool:
    return len(handled) == total


async def _settled(stream: ReliableStream) -> bool:
    try:
        return (await stream.stats()).pending == 0
    except StateError:
        return False


async def test_stats_of_a_stopped_server_raise_our_error_not_redis_s(
    own_config: Config, client: aioredis.Redis, server_dir: Path
) -> None:
    """Every round trip of stats() (the consumers' liveness too) is translated, so a
    service's stats loop sees a StateError it tolerates, never a raw ConnectionError."""
    stream = make_stream(client, own_config)
    await stream.ensure_group()
    await anyio.to_thread.run_sync(embedded.stop_server, server_dir)
    with pytest.raises(StateError):
        await stream.stats()
    with pytest.raises(StateError):
        await stream._alive(["c1"])  # the round trip stats() makes after its first one
