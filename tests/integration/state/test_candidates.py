"""The latest candidates as a long-lived reader sees them: read again only when a new run has
replaced them, never older than the run stored."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.state.candidates import CandidateStore, fetch_candidates
from dsa110d.state.keys import Keys

pytestmark = pytest.mark.anyio


def candidates(run: int) -> list[dict[str, object]]:
    return [{"source_id": f"J{run}-{n}", "class": "variable", "eta": 10.0 - n} for n in range(3)]


async def test_a_new_run_is_seen_at_once_and_an_unchanged_one_is_not_read_again(
    config: Config, redis: aioredis.Redis
) -> None:
    store = CandidateStore(redis, Keys(config.redis.namespace))
    assert await fetch_candidates(config) is None
    await store.replace({"run_time": "2026-11-18T12:00:00+00:00"}, candidates(1))
    first = await fetch_candidates(config)
    assert first is not None and first.candidates[0]["source_id"] == "J1-0"
    assert await fetch_candidates(config) is first  # unchanged: kept, not read again
    await store.replace({"run_time": "2026-11-18T13:00:00+00:00"}, candidates(2))
    second = await fetch_candidates(config)
    assert second is not None and second is not first
    assert [c["source_id"] for c in second.candidates] == ["J2-0", "J2-1", "J2-2"]
    assert second.run == {"run_time": "2026-11-18T13:00:00+00:00"}
