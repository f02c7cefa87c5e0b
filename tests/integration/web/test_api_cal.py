"""``/api/v1/cal`` and ``/api/v1/cal/resolve`` answer what ``dsa110ctl cal`` prints, on a real
server, and refuse bad kinds and times in one line."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.operations import calibration
from tests.integration.operations.test_calibration import seed
from tests.integration.web.webkit import aget, serving

pytestmark = pytest.mark.anyio


async def test_the_calibration_endpoints(config: Config, redis: aioredis.Redis) -> None:
    await seed(config, redis)
    async with serving(config, redis) as url:
        listed = (await aget(url + "/api/v1/cal")).json()
        assert listed == await calibration.list_solutions(config, limit=200)
        assert [r["solution_id"] for r in listed] == ["g-0321-06", "bp-0321", "bp-0320"]
        poor = (await aget(url + "/api/v1/cal?kind=bandpass&status=poor")).json()
        assert [r["solution_id"] for r in poor] == ["bp-0321"]
        found = (await aget(url + "/api/v1/cal/resolve?time=2026-03-21T06:30:00Z")).json()
        assert found["bandpass"]["solution_id"] == "bp-0320"
        assert found["gains"]["solution_id"] == "g-0321-06"
        for path in ("/api/v1/cal?kind=phase", "/api/v1/cal/resolve?time=yesterday"):
            reply = await aget(url + path)
            assert reply.status == 400 and "\n" not in reply.json()["error"], path
