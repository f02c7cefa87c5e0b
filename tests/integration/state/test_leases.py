"""Leases against a real server: fencing tokens, expiry, auto-renewal, loss cancels the work,
and processes racing for one lease."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import FencingError, LeaseHeldError, LeaseLostError
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases

pytestmark = pytest.mark.anyio
RACER = Path(__file__).with_name("lease_racer.py")
REPO = Path(__file__).resolve().parents[3]


def make_leases(redis: aioredis.Redis, config: Config) -> Leases:
    return Leases(redis, Keys(config.redis.namespace), config.leases)


async def test_tokens_increase_and_only_the_owner_renews_or_releases(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    first = await leases.acquire("set:A", owner="p1")
    assert first is not None
    assert await leases.acquire("set:A", owner="p2") is None
    assert await leases.holder("set:A") == (first.token, "p1")
    impostor = type(first)("set:A", "p2", first.token, first.ttl_sec)
    assert not await leases.renew(impostor)
    assert not await leases.release(impostor)
    assert await leases.renew(first)
    assert await leases.release(first)
    second = await leases.acquire("set:A", owner="p2")
    assert second is not None and second.token > first.token


async def test_a_token_is_never_issued_twice_even_after_its_keys_were_pruned(
    redis: aioredis.Redis, config: Config
) -> None:
    """A block's output files carry its run's token: a block whose record (and fencing keys)
    housekeeping removed, recorded again later, must not reuse a token of its first life."""
    leases = make_leases(redis, config)
    keys = Keys(config.redis.namespace)
    first = await leases.acquire("block:B", owner="p1")
    assert first is not None
    await leases.commit(first)
    await leases.release(first)
    await redis.delete(keys.fence("block:B"), keys.committed_token("block:B"))  # pruned
    again = await leases.acquire("block:B", owner="p2")
    assert again is not None and again.token > first.token
    with pytest.raises(FencingError):
        await leases.commit(first)  # the first life's holder, waking up, is still refused
    other = await leases.acquire("set:C", owner="p3")
    assert other is not None and other.token not in (first.token, again.token)


async def test_expired_holder_cannot_commit_after_a_newer_holder(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    stale = await leases.acquire("block:7", owner="paused", ttl_sec=0.2)
    assert stale is not None
    await anyio.sleep(0.3)  # the holder "pauses" past its TTL
    fresh = await leases.acquire("block:7", owner="new")
    assert fresh is not None
    with pytest.raises(FencingError, match="stale"):
        await leases.commit(stale)  # newer token issued, even before it committed
    await leases.commit(fresh)
    with pytest.raises(FencingError):
        await leases.commit(stale)


async def test_run_fenced_applies_a_change_only_for_the_newest_token(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    keys = Keys(config.redis.namespace)
    record = keys.block_record("7")
    stale = await leases.acquire("block:7", ttl_sec=0.2)
    assert stale is not None
    await anyio.sleep(0.3)
    fresh = await leases.acquire("block:7")
    assert fresh is not None
    await leases.run_fenced(fresh, lambda pipe: pipe.hset(record, "state", "done-by-fresh"))
    with pytest.raises(FencingError):
        await leases.run_fenced(stale, lambda pipe: pipe.hset(record, "state", "overwritten"))
    assert await redis.hget(record, "state") == "done-by-fresh"  # type: ignore[misc]


async def test_hold_renews_while_work_runs_and_releases_after(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    async with leases.hold("analyzer") as lease:
        await anyio.sleep(4 * config.leases.ttl_sec)  # far past the TTL
        assert await leases.holder("analyzer") == (lease.token, lease.owner)
        await leases.commit(lease)
    assert await leases.holder("analyzer") is None


async def test_hold_refuses_a_held_lease(redis: aioredis.Redis, config: Config) -> None:
    leases = make_leases(redis, config)
    assert await leases.acquire("set:B", owner="someone") is not None
    with pytest.raises(LeaseHeldError, match="someone"):
        async with leases.hold("set:B"):
            pytest.fail("body must not run")


async def test_losing_the_lease_cancels_the_work_and_raises(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    keys = Keys(config.redis.namespace)
    reached_end = False
    started = time.monotonic()
    with pytest.raises(LeaseLostError, match="set:C"):
        async with leases.hold("set:C") as lease:
            await redis.delete(keys.lease("set:C"))  # taken away (operator, or expiry)
            assert await leases.acquire("set:C", owner="usurper") is not None
            await anyio.sleep(30)
            reached_end = True
    assert not reached_end
    assert time.monotonic() - started < 5 * config.leases.renew_interval_sec
    with pytest.raises(FencingError):
        await leases.commit(lease)


@pytest.mark.timeout(60)
async def test_processes_racing_for_a_lease_exactly_one_wins(
    redis: aioredis.Redis, config: Config, server_url: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for round_number in range(3):
        start_at = time.time() + 2.0
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(RACER),
                    server_url,
                    config.redis.namespace,
                    f"race-{round_number}",
                    str(start_at),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=30)[0].strip() for p in procs]
        assert all(p.returncode == 0 for p in procs)
        winners = [o for o in outputs if o != "none"]
        assert len(winners) == 1, outputs
        # one token issued per round (the namespace's counter): a loser takes none
        assert winners == [str(round_number + 1)]


async def test_an_error_in_the_work_propagates_unchanged_and_releases(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    with pytest.raises(KeyError, match="boom"):
        async with leases.hold("set:D"):
            raise KeyError("boom")
    assert await leases.holder("set:D") is None


async def test_outer_cancellation_of_the_work_releases_the_lease(
    redis: aioredis.Redis, config: Config
) -> None:
    leases = make_leases(redis, config)
    with anyio.move_on_after(0.1) as outer:
        async with leases.hold("set:E"):
            await anyio.sleep(30)
    assert outer.cancelled_caught
    assert await leases.holder("set:E") is None
