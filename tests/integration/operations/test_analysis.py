"""``recompute`` records a full-recompute request on a real server, in-process and as a
program; the analyzer then finds a run due at once, and its next run is a full rebuild that
takes the request."""

from __future__ import annotations

import json
import time

import pytest

from dsa110d.config import Config
from dsa110d.operations.analysis import request_recompute
from dsa110d.state.connection import Redis
from dsa110d.state.keys import Keys
from dsa110d.state.registry import Registry, RegistryEntry
from dsa110d.workers import WorkerPool
from tests.integration.operations.ctlkit import ctl
from tests.integration.services.analyzerkit import WORKER_MODULES, handler, queue
from tests.integration.services.seed import block_id, seed_blocks

pytestmark = pytest.mark.anyio


async def test_a_request_is_recorded_and_the_next_analyzer_run_is_a_full_rebuild(
    config: Config, redis: Redis
) -> None:
    seed_blocks(config.paths.results_dir, range(3))
    shown = ctl(config, "recompute", "--json")
    assert shown.returncode == 0, shown.stderr
    first = json.loads(shown.stdout)
    assert first["analyzers"] == 0 and first["pending_blocks"] == 0
    assert first["last_finished"] is None and first["last_status"] is None
    assert abs(first["requested_at"] - time.time()) < 60
    assert "no analyzer is running: the first to start runs it" in ctl(config, "recompute").stdout

    async with WorkerPool(1, WORKER_MODULES) as pool:
        analyzer = handler(config, redis, pool)
        assert await analyzer.seconds_until_due() == 0.0
        taken = await analyzer.run_once()
        assert taken is not None and taken.ok and taken.snapshot.full
        assert taken.result["run"]["state"] == "rebuilt: requested"
        assert not (await queue(config, redis).outlook()).full  # taken: the request is gone

        # after a good run with nothing noted, the next is an interval away ...
        await queue(config, redis).note_blocks([block_id(2)], time.time())
        normal = await analyzer.run_once()
        assert normal is not None and normal.ok and not normal.snapshot.full
        assert await analyzer.seconds_until_due() > 10  # testing: 0.01 h
        # ... until an operator asks: then it is due at once, and takes the noted block too
        await queue(config, redis).note_blocks([block_id(1)], time.time())
        request = await request_recompute(config)
        assert request.analyzers == 0 and request.pending_blocks == 1
        assert request.last_status == "ok" and request.last_finished is not None
        assert await analyzer.seconds_until_due() == 0.0
        again = await analyzer.run_once()
        assert again is not None and again.ok and again.snapshot.full
        assert again.snapshot.blocks == (block_id(1),)
        assert again.result["run"]["state"] == "rebuilt: requested"


async def test_the_program_says_who_runs_it_and_how_the_last_run_went(
    config: Config, redis: Redis
) -> None:
    registry = Registry(redis, Keys(config.redis.namespace))
    for service in ("analyzer", "processor"):  # an analyzer is counted, other services not
        entry = RegistryEntry("host-a", 4242, service, "HEALTHY", "", "2026-11-26", "0")
        await registry.publish(entry, 60)
    q = queue(config, redis)
    now = time.time()
    await q.finish(None, {"status": "failed", "finished_at": now - 7200}, now - 7200)
    await q.note_blocks(["B1", "B2"], now)
    shown = ctl(config, "recompute")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1:] == [
        "the run also takes 2 noted blocks",
        "last run: failed, 2h00m ago",
    ]
    assert "full recompute requested at " in shown.stdout
    assert shown.stdout.splitlines()[0].endswith(": the next analyzer to look runs it (1 running)")
    assert (await q.snapshot()).full
