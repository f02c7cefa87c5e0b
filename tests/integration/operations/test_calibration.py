"""``dsa110ctl cal list|show|resolve`` on a real server, in-process and as the program:
newest first, filters, what applies at a time, escaped output, --json."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from dsa110d.config import Config
from dsa110d.errors import BadRequestError, NotFoundError
from dsa110d.operations import calibration
from dsa110d.state.calibration import Calibrations, CalSolution
from dsa110d.state.keys import Keys
from dsa110d.state.leases import Leases
from tests.helpers.calrecords import DAY0_MJD, solution
from tests.integration.operations.ctlkit import ctl

pytestmark = pytest.mark.anyio
HOUR = 1.0 / 24
HOSTILE = "3C286\x1b[31m [bold]x[/bold]"
"""A calibrator name a producer could have written: a terminal escape and rich markup."""


async def register(config: Config, redis: aioredis.Redis, solutions: list[CalSolution]) -> None:
    keys = Keys(config.redis.namespace)
    cal, leases = Calibrations(redis, keys), Leases(redis, keys, config.leases)
    lease = await leases.acquire("block:2026-03-20T06:00:00")
    assert lease is not None
    await leases.run_fenced(lease, lambda pipe: cal.stage_register(pipe, solutions, {}, 7))


async def seed(config: Config, redis: aioredis.Redis) -> None:
    await register(config, redis, [
        solution("bp-0320", "bandpass", DAY0_MJD + 0.25, calibrator=HOSTILE),
        solution("bp-0321", "bandpass", DAY0_MJD + 1.25, status="poor"),
        solution("g-0321-06", "gains", DAY0_MJD + 1.25),
    ])  # fmt: skip


async def test_operations_list_show_and_resolve(config: Config, redis: aioredis.Redis) -> None:
    await seed(config, redis)
    rows = await calibration.list_solutions(config)
    assert [r["solution_id"] for r in rows] == ["g-0321-06", "bp-0321", "bp-0320"]
    assert rows[2]["valid_from_utc"] == "2026-03-20T06:00:00Z"
    assert [r["solution_id"] for r in await calibration.list_solutions(config, "bandpass", "ok")]\
        == ["bp-0320"]  # fmt: skip
    shown = await calibration.show_solution(config, "bp-0321")
    assert shown["effective_status"] == "poor" and shown["token"] == 7
    with pytest.raises(NotFoundError):
        await calibration.show_solution(config, "bp-none")
    found = await calibration.resolve(config, "2026-03-21T06:30:00Z")
    assert found["bandpass"]["solution_id"] == "bp-0320"  # bp-0321 is poor
    assert found["gains"]["solution_id"] == "g-0321-06"
    assert (await calibration.resolve(config, str(DAY0_MJD)))["bandpass"] is None
    with pytest.raises(BadRequestError):
        await calibration.resolve(config, "yesterday")
    with pytest.raises(BadRequestError):
        await calibration.list_solutions(config, "phase")


async def test_the_program_prints_escaped_tables_and_json(
    config: Config, redis: aioredis.Redis
) -> None:
    await seed(config, redis)
    listed = ctl(config, "cal", "list")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "[bold]x[/bold]" in listed.stdout  # shown as text
    assert listed.stdout.index("g-0321-06") < listed.stdout.index("bp-0320")
    as_json = ctl(config, "cal", "list", "--kind", "bandpass", "--json")
    assert [r["solution_id"] for r in json.loads(as_json.stdout)] == ["bp-0321", "bp-0320"]
    shown = ctl(config, "cal", "show", "bp-0320")
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "3C286" in shown.stdout
    missing = ctl(config, "cal", "show", "bp-none")
    assert missing.returncode == 1 and "no calibration solution 'bp-none'" in missing.stderr
    resolved = ctl(config, "cal", "resolve", "2026-03-21T06:30:00", "--json")
    doc = json.loads(resolved.stdout)
    assert (doc["bandpass"]["solution_id"], doc["gains"]["solution_id"]) == (
        "bp-0320", "g-0321-06",
    )  # fmt: skip
    bad = ctl(config, "cal", "resolve", "yesterday")
    assert bad.returncode == 2 and "not an MJD" in bad.stderr
