"""``dsa110ctl fast-alerts`` reads the processor's fast alert records on a real server, as a
program: none, then a table and JSON newest first, filtered by status."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.state.fast_alerts import FastAlerts
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from tests.integration.operations.ctlkit import ctl

pytestmark = pytest.mark.anyio
T0 = 1774000000.0
ALERTS = [
    {"alert_id": "2026-03-20T06:00:00/DSA J100220.7+600803", "name": "DSA J100220.7+600803",
     "chunk_id": "2026-03-20T06:00:00", "ra_deg": 150.586, "dec_deg": 60.134, "peak_jy": 0.061,
     "snr": 82.8, "detected_at": T0, "status": "confirmed", "settled_by": "2026-03-20T06:00:00"},
    {"alert_id": "2026-03-20T06:05:09/DSA J100137.5+600800", "name": "DSA J100137.5+600800",
     "chunk_id": "2026-03-20T06:05:09", "ra_deg": 150.406, "dec_deg": 60.133, "peak_jy": 0.011,
     "snr": 14.5, "detected_at": T0 + 309, "status": "retracted"},
]  # fmt: skip


async def test_fast_alerts_through_the_program(config: Config, redis: aioredis.Redis) -> None:
    assert "no fast alerts" in ctl(config, "fast-alerts").stdout
    keys = Keys(config.redis.namespace)
    leases = Leases(redis, keys, config.leases)
    lease = await leases.acquire("set:F")
    assert lease is not None
    store = FastAlerts(redis, keys)
    await leases.run_fenced(lease, lambda pipe: store.stage_record(pipe, "F", ALERTS))
    shown = ctl(config, "fast-alerts", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [a["name"] for a in json.loads(shown.stdout)] == [
        "DSA J100137.5+600800", "DSA J100220.7+600803",
    ]  # fmt: skip
    confirmed = json.loads(ctl(config, "fast-alerts", "--json", "--status", "confirmed").stdout)
    assert [a["status"] for a in confirmed] == ["confirmed"]
    table = ctl(config, "fast-alerts").stdout
    assert "DSA J100220.7+600803" in table and "retracted" in table and "82.8" in table
    assert ctl(config, "fast-alerts", "--status", "maybe").returncode == 2
