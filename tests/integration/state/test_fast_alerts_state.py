"""The fast alert records on a real server: recorded once (a second search of the same chunk
keeps the first record), never by a holder whose set lease was superseded, settled by the
block's holder, listed newest first."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import FencingError
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases

pytestmark = pytest.mark.anyio


def _alert(chunk: str, name: str, at: float, snr: float = 20.0) -> dict[str, object]:
    return {"alert_id": f"{chunk}/{name}", "chunk_id": chunk, "name": name, "snr": snr,
            "detected_at": at, "status": "pending"}  # fmt: skip


async def test_an_alert_is_recorded_once_and_only_by_the_newest_holder(
    redis: aioredis.Redis, config: Config
) -> None:
    keys = Keys(config.redis.namespace)
    store, leases = FastAlerts(redis, keys), Leases(redis, keys, config.leases)
    lease = await leases.acquire("set:A")
    assert lease is not None
    first = [_alert("A", "DSA J1", 100.0)]
    assert await store.new_ids(first) == {"A/DSA J1"}
    await leases.run_fenced(lease, lambda pipe: store.stage_record(pipe, "A", first))
    assert await store.searched("A")
    assert await store.new_ids(first) == set()
    again = [_alert("A", "DSA J1", 200.0, snr=99.0)]  # a redelivered search of the same chunk
    await leases.run_fenced(lease, lambda pipe: store.stage_record(pipe, "A", again))
    assert await store.of_chunks(["A"]) == first  # the first record stands

    stale = await leases.acquire("set:B", ttl_sec=0.2)
    assert stale is not None
    await anyio.sleep(0.3)
    fresh = await leases.acquire("set:B")
    assert fresh is not None
    with pytest.raises(FencingError):
        await leases.run_fenced(
            stale, lambda pipe: store.stage_record(pipe, "B", [_alert("B", "DSA J2", 300.0)])
        )
    assert not await store.searched("B") and await store.of_chunks(["B"]) == []


async def test_settled_records_replace_the_pending_ones_and_list_newest_first(
    redis: aioredis.Redis, config: Config
) -> None:
    keys = Keys(config.redis.namespace)
    store, leases = FastAlerts(redis, keys), Leases(redis, keys, config.leases)
    lease = await leases.acquire("set:A")
    assert lease is not None
    alerts = [_alert("A", "DSA J1", 100.0), _alert("A", "DSA J3", 150.0)]
    await leases.run_fenced(lease, lambda pipe: store.stage_record(pipe, "A", alerts))
    block = await leases.acquire("block:X")
    assert block is not None
    settled = [{**alerts[0], "status": "retracted", "settled_by": "X"}]
    await leases.run_fenced(block, lambda pipe: store.stage_settle(pipe, settled))
    assert [(a["name"], a["status"]) for a in await store.latest()] == [
        ("DSA J3", "pending"), ("DSA J1", "retracted"),
    ]  # fmt: skip
    assert [a["name"] for a in await store.latest(limit=1)] == ["DSA J3"]
