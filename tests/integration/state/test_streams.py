"""Reliable streams against a real server: dedup, dead letters, replay, bad envelopes, trimming,
reclaim only from lapsed heartbeats, backoff between retries, introspection."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import MessageError
from dsa110d.messages import encode
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.stream_entries import Delivery
from tests.integration.state.statekit import (
    fast_config,
    hdf5_message,
    make_stream,
    running,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_dedup_publish_enqueues_one_logical_event_once(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    first = await stream.publish(hdf5_message(set="2025-01-01T00:00:00"), dedup_key="set-A")
    again = await stream.publish(hdf5_message(set="2025-01-01T00:00:00"), dedup_key="set-A")
    other = await stream.publish(hdf5_message(set="2025-01-01T00:05:00"), dedup_key="set-B")
    assert first is not None and other is not None
    assert again is None
    assert await redis.xlen(stream.name) == 2


async def test_dedup_publish_is_atomic_under_concurrency(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    results: list[str | None] = []

    async def announce() -> None:
        results.append(await stream.publish(hdf5_message(n=1), dedup_key="same-event"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(announce)
    assert sum(r is not None for r in results) == 1
    assert await redis.xlen(stream.name) == 1


async def test_publish_refuses_an_oversize_message(redis: aioredis.Redis, config: Config) -> None:
    stream = make_stream(redis, config)
    with pytest.raises(MessageError, match="over the size limit"):
        await stream.publish(hdf5_message(blob="x" * (config.streams.max_entry_bytes + 1)))


async def test_handled_entries_are_acked_and_effects_happen_once(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message.payload["n"])

    for n in range(50):
        await stream.publish(hdf5_message(n=n))
    consumer = StreamConsumer(stream, "c1", handler)
    async with running(consumer):
        await wait_until(lambda: _true(len(seen) == 50), 10)
        await wait_until(lambda: _pending_is(stream, 0), 5)
    assert seen == list(range(50))
    stats = await stream.stats()
    assert stats.pending == 0 and stats.undelivered == 0 and stats.length == 50


async def test_poison_message_goes_to_dead_letters_after_max_attempts_and_replays(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    calls: list[float] = []
    healed = False

    async def handler(delivery: Delivery) -> None:
        calls.append(time.monotonic())
        if not healed:
            raise RuntimeError(f"cannot convert set {delivery.message.payload['set']}")

    await stream.publish(hdf5_message(set="S1"))
    consumer = StreamConsumer(stream, "c1", handler)
    async with running(consumer):
        await wait_until(lambda: _dead_count(stream, 1), 10)
        assert len(calls) == config.retry.max_attempts
        letter = (await stream.dead_letters())[0]
        assert letter.reason == "RuntimeError: cannot convert set S1"
        assert [a["error"] for a in letter.attempts] == [letter.reason] * 3
        assert json.loads(letter.raw)["payload"] == {"set": "S1"}
        assert (await stream.stats()).pending == 0

        healed = True
        assert len(await stream.replay()) == 1
        await wait_until(lambda: _true(len(calls) == 4), 10)
        await wait_until(lambda: _pending_is(stream, 0), 5)
    stats = await stream.stats()
    assert stats.dead_letters == 0


async def test_failed_handler_backs_off_instead_of_spinning(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    calls: list[float] = []

    async def handler(delivery: Delivery) -> None:
        calls.append(time.monotonic())
        raise RuntimeError("disk full")

    await stream.publish(hdf5_message(set="S1"))
    # rng() == 1: every delay is its ceiling, 0.05 s then 0.1 s (base 0.05, doubling)
    consumer = StreamConsumer(stream, "c1", handler, rng=lambda: 1.0)
    async with running(consumer):
        await wait_until(lambda: _dead_count(stream, 1), 10)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "bad JSON"),
        ('{"id":"x"}', "missing field 'type'"),
        ("__unknown_type__", "unknown type 'PIZZA'"),
        ("__version__", "unsupported schema_version 99"),
        ("__oversize__", "over the size limit"),
    ],
)
async def test_bad_envelopes_go_to_dead_letters_and_consumer_keeps_going(
    redis: aioredis.Redis, config: Config, raw: str, reason: str
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    good = json.loads(encode(hdf5_message(n=1)))
    if raw == "__unknown_type__":
        raw = json.dumps({**good, "type": "PIZZA"})
    elif raw == "__version__":
        raw = json.dumps({**good, "schema_version": 99})
    elif raw == "__oversize__":
        raw = json.dumps({**good, "payload": {"x": "y" * config.streams.max_entry_bytes}})
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message.payload["n"])

    await stream.publish_raw(raw)
    await stream.publish(hdf5_message(n=2))
    async with running(StreamConsumer(stream, "c1", handler)):
        await wait_until(lambda: _true(seen == [2]), 10)
        await wait_until(lambda: _pending_is(stream, 0), 5)
    letters = await stream.dead_letters()
    assert len(letters) == 1
    assert reason in letters[0].reason
    assert letters[0].raw == raw


async def test_long_handler_with_live_heartbeat_is_never_reclaimed(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    runs: list[str] = []
    ttl = config.streams.heartbeat_ttl_sec

    async def slow(delivery: Delivery) -> None:
        runs.append("slow")
        await anyio.sleep(10 * ttl)  # idle time far past any heartbeat threshold

    async def thief(delivery: Delivery) -> None:
        runs.append("thief")

    await stream.publish(hdf5_message(n=1))
    worker = StreamConsumer(stream, "worker", slow)
    other = StreamConsumer(stream, "other", thief)
    async with running(worker):
        await wait_until(lambda: _true(runs == ["slow"]), 5)
        async with running(other):
            # the other consumer scans for reclaimable entries every heartbeat interval
            await anyio.sleep(8 * ttl)
            pending = await redis.xpending_range(stream.name, stream.group, "-", "+", 10)
            assert pending[0]["consumer"] == "worker"
            assert pending[0]["time_since_delivered"] > 7 * ttl * 1000
            await wait_until(lambda: _pending_is(stream, 0), 10)
    assert runs == ["slow"]
    assert other.counters.reclaimed == 0


async def test_entries_of_a_consumer_without_heartbeat_are_reclaimed(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    await stream.publish(hdf5_message(n=7))
    # "ghost" takes the entry and never heartbeats (as if it died at once)
    assert len(await stream.read_new("ghost", 10, None)) == 1
    seen: list[tuple[int, int]] = []

    async def handler(delivery: Delivery) -> None:
        seen.append((delivery.message.payload["n"], delivery.deliveries))

    rescuer = StreamConsumer(stream, "rescuer", handler)
    async with running(rescuer):
        await wait_until(lambda: _true(bool(seen)), 10)
        await wait_until(lambda: _pending_is(stream, 0), 5)
    assert seen == [(7, 2)]
    assert rescuer.counters.reclaimed == 1


async def test_trim_drops_old_acked_entries_and_keeps_unacked_ones(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    ids = [await stream.publish(hdf5_message(n=n)) for n in range(6)]
    delivered = await stream.read_new("c1", 4, None)  # 0..3 delivered, 4..5 never read
    await stream.ack([delivered[0].entry_id, delivered[1].entry_id, delivered[3].entry_id])
    # far in the future every entry is past retention: only 0 and 1 may go (2 is unacked)
    trimmed = await stream.trim(now=time.time() + 2 * config.streams.retention_sec)
    assert trimmed == 2
    left = [i for i, _ in await redis.xrange(stream.name)]
    assert left == ids[2:]
    # within retention nothing goes
    assert await stream.trim() == 0


async def test_stats_report_length_pending_consumers_and_dead_letters(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)
    empty = await stream.stats()
    assert (empty.length, empty.pending, empty.dead_letters) == (0, 0, 0)
    await stream.ensure_group()
    for n in range(3):
        await stream.publish(hdf5_message(n=n))
    await stream.heartbeat("c1")
    entries = await stream.read_new("c1", 2, None)
    await stream.dead_letter(entries[0], "test reason", "c1", [])
    stats = await stream.stats()
    assert stats.length == 3
    assert stats.pending == 1
    assert stats.undelivered == 1
    assert stats.dead_letters == 1
    assert stats.oldest_pending_age_sec is not None and stats.oldest_pending_age_sec < 60
    assert [(c.name, c.pending, c.alive) for c in stats.consumers] == [("c1", 1, True)]


async def _true(value: bool) -> bool:
    return value


async def _pending_is(stream, count: int) -> bool:  # type: ignore[no-untyped-def]
    return bool((await stream.stats()).pending == count)


async def _dead_count(stream, count: int) -> bool:  # type: ignore[no-untyped-def]
    return bool((await stream.stats()).dead_letters == count)


async def test_consumers_trim_old_acked_entries_by_themselves(
    redis: aioredis.Redis, tmp_path: Path, server_url: str
) -> None:
    config = fast_config(tmp_path, server_url, streams__retention_sec=0.3)
    stream = make_stream(redis, config)
    await stream.ensure_group()
    for n in range(5):
        await stream.publish(hdf5_message(n=n))
    seen: list[int] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message.payload["n"])

    consumer = StreamConsumer(stream, "c1", handler, trim_interval_sec=0.1)
    try:
        async with running(consumer):
            await wait_until(lambda: _true(len(seen) == 5), 10)
            await wait_until(lambda: _length_is(redis, stream.name, 0), 10)
    finally:
        async for key in redis.scan_iter(match=f"{config.redis.namespace}:*"):
            await redis.delete(key)


async def test_replay_and_purge_single_dead_letters(redis: aioredis.Redis, config: Config) -> None:
    stream = make_stream(redis, config)
    await stream.ensure_group()
    for n in range(3):
        await stream.publish(hdf5_message(n=n))
    for entry in await stream.read_new("c1", 3, None):
        await stream.dead_letter(entry, f"failed {entry.entry_id}", "c1", [{"error": "x"}])
    letters = await stream.dead_letters()
    assert [json.loads(d.raw)["payload"]["n"] for d in letters] == [0, 1, 2]
    replayed = await stream.replay(letters[1].dead_id)
    assert len(replayed) == 1
    assert await stream.replay(letters[1].dead_id) == []  # already gone: not twice
    again = await stream.read_new("c1", 10, None)
    assert [json.loads(e.raw or "")["payload"]["n"] for e in again] == [1]
    assert await stream.purge(letters[0].dead_id) == 1
    assert [d.dead_id for d in await stream.dead_letters()] == [letters[2].dead_id]
    assert await stream.purge() == 1
    assert (await stream.stats()).dead_letters == 0


async def _length_is(redis: aioredis.Redis, name: str, length: int) -> bool:
    return int(await redis.xlen(name)) == length


async def test_trim_bounds_a_stream_nobody_reads_by_age_alone(
    redis: aioredis.Redis, config: Config
) -> None:
    stream = make_stream(redis, config)  # no ensure_group: like VARIABILITY_ANALYSIS today
    ids = [await stream.publish(hdf5_message(n=n)) for n in range(3)]
    assert await stream.trim() == 0  # within retention nothing goes
    later = time.time() + 2 * config.streams.retention_sec
    assert await stream.trimmable(now=later) == 3
    assert await stream.trim(now=later) == 3
    assert await redis.xlen(stream.name) == 0
    assert ids
