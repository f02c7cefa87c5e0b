"""A consumer process killed with SIGKILL mid-message: another consumer takes its entries once
its heartbeat lapses, and each effect happens exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.state.consumer import StreamConsumer
from dsa110d.state.keys import Keys
from dsa110d.state.stream_entries import Delivery
from tests.integration.state.statekit import (
    apply_effect,
    effects,
    hdf5_message,
    make_stream,
    running,
    wait_until,
)

pytestmark = pytest.mark.anyio
WORKER = Path(__file__).with_name("consumer_proc.py")
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(60)
async def test_killed_consumer_work_is_reclaimed_after_heartbeat_lapses_effect_once(
    redis: aioredis.Redis, config: Config, server_url: str
) -> None:
    stream = make_stream(redis, config)
    keys = Keys(config.redis.namespace)
    await stream.ensure_group()
    messages = [hdf5_message(n=1), hdf5_message(n=2, hang=True), hdf5_message(n=3)]
    for message in messages:
        await stream.publish(message)

    victim = subprocess.Popen(
        [sys.executable, str(WORKER), server_url, config.redis.namespace, "victim"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{WORKER.parent}"},
    )
    try:
        assert victim.stdout is not None
        lines = [victim.stdout.readline().strip() for _ in range(3)]
        assert lines == ["effect 1", "effect 2", "hanging 2"]
        await anyio.sleep(0.3)  # entry 1 is acked promptly although entry 2 holds the loop
        os.kill(victim.pid, signal.SIGKILL)  # mid-message: effect 2 done, not acked; 3 held
        killed_at = time.monotonic()
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        if victim.stdout is not None:
            victim.stdout.close()
    pending = await redis.xpending_range(stream.name, stream.group, "-", "+", 10)
    assert {p["consumer"] for p in pending} == {"victim"} and len(pending) == 2

    rescued: list[tuple[int, int, bool]] = []

    async def handler(delivery: Delivery) -> None:
        victim_alive = bool(await redis.exists(stream.heartbeat_key("victim")))
        await apply_effect(redis, keys, delivery.message.id, "rescuer")
        rescued.append((delivery.message.payload["n"], delivery.deliveries, victim_alive))

    async with running(StreamConsumer(stream, "rescuer", handler)):
        await wait_until(lambda: _count_is(rescued, 2), 10)
        await wait_until(lambda: _no_pending(stream), 5)
    took = time.monotonic() - killed_at

    assert sorted(rescued) == [(2, 2, False), (3, 2, False)]
    assert took < 10 * config.streams.heartbeat_ttl_sec
    for message, by in zip(messages, ["victim", "victim", "rescuer"], strict=True):
        assert await effects(redis, keys, message.id) == (1, by)


async def _count_is(items: Sequence[object], count: int) -> bool:
    await anyio.sleep(0)
    return len(items) == count


async def _no_pending(stream) -> bool:  # type: ignore[no-untyped-def]
    return bool((await stream.stats()).pending == 0)
