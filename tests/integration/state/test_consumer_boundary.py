"""The consumer's fault boundary against a real server: a poison entry (nested too deep, not
UTF-8) ends in the dead letters on its first failure, with a one-line reason, and the entries
read or reclaimed together with it are handled exactly once; the consumer never stops."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.messages import encode
from dsa110d.state.alerts import queue_views
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.housekeeping import prune_dead_letters
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery, Entry
from dsa110d.state.streams import ReliableStream
from tests.integration.state.statekit import hdf5_message, make_stream, running, wait_until

pytestmark = pytest.mark.anyio

NOT_UTF8 = b'{"id": "\xff\xfe", "type": "HDF5_PROCESSING"}'


def nested(depth: int) -> str:
    """An envelope whose payload nests ``depth`` arrays deep (json.loads recurses on it)."""
    good = json.loads(encode(hdf5_message(n=0)))
    return json.dumps({**good, "payload": "HERE"}).replace('"HERE"', "[" * depth + "]" * depth)


@pytest.fixture
async def raw_client(server_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client that does not decode replies: writes and reads bytes as they are."""
    client = aioredis.Redis.from_url(server_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _settled(stream: ReliableStream, dead: int) -> bool:
    stats = await stream.stats()
    return stats.pending == 0 and stats.undelivered == 0 and stats.dead_letters == dead


async def test_deeply_nested_entry_is_dead_lettered_and_the_next_one_handled(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message.payload["n"])

    await stream.publish(hdf5_message(n=1))
    await stream.publish_raw(nested(20_000))
    await stream.publish(hdf5_message(n=2))
    consumer = StreamConsumer(stream, "c1", handler)
    async with running(consumer):
        await wait_until(lambda: _settled(stream, 1), 10)
    assert seen == [1, 2]
    (letter,) = await stream.dead_letters()
    assert "nests deeper than" in letter.reason and "\n" not in letter.reason
    assert consumer.counters.dead_lettered == 1 and consumer.counters.outages == 0


async def test_entry_not_utf8_reclaimed_with_neighbours_never_strands_them(
    redis: aioredis.Redis, raw_client: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    good_one = await stream.publish(hdf5_message(n=1))
    poison = await raw_client.xadd(stream.name, {"m": NOT_UTF8})
    good_two = await stream.publish(hdf5_message(n=2))
    # A consumer that read all three and died: no heartbeat, so they are reclaimed together.
    await raw_client.execute_command(  # type: ignore[no-untyped-call]
        "XREADGROUP", "GROUP", stream.group, "ghost", "COUNT", 10, "STREAMS", stream.name, ">"
    )
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.entry_id)

    consumer = StreamConsumer(stream, "c1", handler)
    async with running(consumer):
        await wait_until(lambda: _settled(stream, 1), 10)
    assert handled == [good_one, good_two]  # exactly once each
    assert consumer.counters.reclaimed == 3 and consumer.counters.outages == 0
    (letter,) = await stream.dead_letters()
    assert letter.entry_id == poison.decode()
    assert "not valid UTF-8" in letter.reason and "\n" not in letter.reason
    # the dead letter keeps the very bytes that came, for an exact replay
    ((_, fields),) = await raw_client.xrange(stream.dead_name)
    assert fields[b"raw"] == NOT_UTF8
    (replayed,) = await stream.replay()
    assert await raw_client.xrange(stream.name, replayed, replayed) == [
        (replayed.encode(), {b"m": NOT_UTF8})
    ]


async def test_entry_not_utf8_read_in_a_batch_is_dead_lettered_at_its_first_delivery(
    redis: aioredis.Redis, raw_client: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    await raw_client.xadd(stream.name, {"m": NOT_UTF8})
    await stream.publish(hdf5_message(n=1))
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message.payload["n"])

    consumer = StreamConsumer(stream, "c1", handler)
    async with running(consumer):
        await wait_until(lambda: _settled(stream, 1), 10)
    assert seen == [1]
    (letter,) = await stream.dead_letters()
    assert letter.attempts == [] and "not valid UTF-8" in letter.reason


async def test_readers_of_streams_and_dead_letters_survive_entries_not_utf8(
    redis: aioredis.Redis, raw_client: aioredis.Redis, config: Config
) -> None:
    """The alert rules' queue views, housekeeping's dry run and the dead-letter listing read
    entries too: one that is not UTF-8 must not break them (it would stop every pass)."""
    stream = make_stream(redis, config)
    await stream.ensure_group()
    await raw_client.xadd(stream.name, {"m": NOT_UTF8})  # waiting, undelivered
    keys = Keys(config.redis.namespace)
    now = time.time()
    await stream.dead_letter(Entry("1-1", NOT_UTF8, 1), "poison", "c1", [])
    (view,) = [v for v in await queue_views(redis, keys, now, "t") if v.stream == stream.name]
    assert view.dead_letters == 1 and view.oldest_wait_sec is not None
    (letter,) = await stream.dead_letters()
    assert letter.raw == NOT_UTF8.decode("utf-8", "replace")
    assert await prune_dead_letters(redis, keys, now + 10, 1.0, True, "t") != []
