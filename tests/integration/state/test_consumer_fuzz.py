"""Fuzz of the consumer's fault boundary against a real server (the embedded Valkey): the
unit-level fuzz (tests/unit/state/test_consumer_fuzz.py) does the bulk on fakeredis; here a
few hundred examples go through the real XREADGROUP / reclaim script / dead-letter
transaction, with the entries written as raw bytes and reclaimed together from a consumer
that died holding them."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from dsa110d.config import Config
from dsa110d.errors import REASON_MAX_CHARS, MessageError
from dsa110d.messages import MessageType, decode
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery, read_bytes
from dsa110d.state.streams import ReliableStream
from tests.fuzzkit import ENTRY_LIMIT, envelope, fuzz_settings, one_line, raw_entries
from tests.integration.state.statekit import fast_config

pytestmark = pytest.mark.anyio

HEARTBEAT_SEC = 0.01  # reclaimable after ~10 ms: many examples within seconds
REASON_LIMIT = REASON_MAX_CHARS  # a dead letter's reason is one bounded line


@pytest.fixture
def fuzz_config(tmp_path: Path, server_url: str) -> Config:
    return fast_config(
        tmp_path,
        server_url,
        streams__heartbeat_interval_sec=HEARTBEAT_SEC,
        streams__heartbeat_ttl_sec=2 * HEARTBEAT_SEC,
    )


def decodes(raw: bytes) -> bool:
    try:
        decode(raw, ENTRY_LIMIT)
    except MessageError:
        return False
    return True


@fuzz_settings(200)
@given(poison=st.lists(raw_entries(), min_size=1, max_size=3), reclaimed=st.booleans())
async def test_poison_entries_reach_the_dead_letters_and_never_strand_their_neighbours(
    redis: aioredis.Redis,
    server_url: str,
    fuzz_config: Config,
    poison: list[bytes],
    reclaimed: bool,
) -> None:
    keys = Keys(f"fz-{uuid.uuid4().hex[:12]}")
    stream = ReliableStream(
        redis, keys, MessageType.HDF5_PROCESSING, "workers", fuzz_config.streams, fuzz_config.retry
    )
    await stream.ensure_group()
    raws = [envelope(n=-1), *poison, envelope(n=-2)]
    ids = [await stream.publish_raw(raw) for raw in raws]
    if reclaimed:  # a consumer read them all and died: they come back in one reclaim
        ghost = ("GROUP", "workers", "ghost", "COUNT", 100, "STREAMS", stream.name, ">")
        await read_bytes(redis, "XREADGROUP", *ghost)
        await anyio.sleep(2 * HEARTBEAT_SEC)
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.entry_id)

    consumer = StreamConsumer(stream, "c1", handler, batch=1)
    try:
        with anyio.fail_after(20):
            # reclaimed entries come once their owner has been seen lapsed for a whole TTL
            while (stats := await stream.stats()).pending or stats.undelivered:
                await consumer.poll_once(block_ms=1)
        ok = [i for i, raw in zip(ids, raws, strict=True) if decodes(raw)]
        assert handled == ok  # each exactly once, in order, both good neighbours among them
        letters = await stream.dead_letters()
        assert sorted(letter.entry_id for letter in letters) == sorted(set(ids) - set(ok))
        assert all(one_line(letter.reason, REASON_LIMIT) for letter in letters)
        stats = await stream.stats()
        assert stats.pending == 0 and stats.undelivered == 0
        assert consumer.counters.outages == 0
        assert consumer.counters.reclaimed == (len(ids) if reclaimed else 0)
    finally:
        async for key in redis.scan_iter(match=f"{keys.namespace}:*", count=1000):
            await redis.delete(key)
