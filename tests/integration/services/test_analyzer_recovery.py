"""The analyzer recovers: a restart resumes from disk; a run past its timeout is killed."""

from __future__ import annotations

import time

import pytest

from dsa110d.config import Config
from dsa110d.science.variability import run as variability_run
from dsa110d.state.connection import Redis
from dsa110d.workers import WorkerPool
from tests.integration.services.analyzerkit import (
    WORKER_MODULES,
    announcements,
    assert_same_metrics,
    expected_frame,
    handler,
    latest_frame,
    queue,
)
from tests.integration.services.seed import block_id, seed_blocks, write_block

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that one analyzer_pool serves every test


async def test_a_restart_resumes_from_the_persisted_state_with_identical_numbers(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    results = config.paths.results_dir
    seed_blocks(results, range(5))
    first = await handler(config, redis, analyzer_pool).run_once()
    assert first is not None and first.ok
    write_block(results, 5)

    # a new daemon: a new worker process (nothing cached), the state read from disk
    async with WorkerPool(1, WORKER_MODULES) as fresh:
        resumed = await handler(config, redis, fresh).run_once()
    assert resumed is not None and resumed.ok
    assert resumed.result["run"]["state"] == "loaded"
    assert resumed.result["run"]["files_read"] == 1 and resumed.result["run"]["blocks_total"] == 6
    incremental = latest_frame(config)
    assert_same_metrics(incremental, expected_frame(config))

    # a corrupt state is rebuilt from all photometry, to the same numbers
    state_dir = results / "variability" / "state"
    (state_dir / "CURRENT").write_text("not json")
    rebuilt = await handler(config, redis, analyzer_pool).run_once()
    assert rebuilt is not None and rebuilt.ok
    assert rebuilt.result["run"]["state"].startswith("rebuilt")
    assert_same_metrics(latest_frame(config), incremental)


def with_timeout(config: Config, seconds: float) -> Config:
    analyzer = config.services.variability_analyzer.model_copy(
        update={"analysis_timeout_sec": seconds}
    )
    services = config.services.model_copy(update={"variability_analyzer": analyzer})
    return config.model_copy(update={"services": services})


async def test_a_run_past_the_timeout_is_cancelled_and_reported(
    config: Config, redis: Redis, analyzer_pool: WorkerPool
) -> None:
    slow = with_timeout(config, 0.1)
    seed_blocks(slow.paths.results_dir, range(8))
    await queue(slow, redis).note_blocks([block_id(0)], time.time())
    worker_before = set(analyzer_pool.pids)
    analyzer = handler(slow, redis, analyzer_pool)

    report = await analyzer.run_once()

    assert report is not None and report.status == "timeout"
    assert "analysis_timeout_sec" in report.error
    assert not set(analyzer_pool.pids) & worker_before  # the worker was killed, not left running
    sent = await announcements(slow, redis)
    assert [m["status"] for m in sent] == ["timeout"]
    out = slow.paths.results_dir / "variability"
    assert not (out / "latest.parquet").exists()
    # the state on disk is absent or a whole generation, never half of one
    assert variability_run.open_state(out / "state").how in ("new", "loaded")
    outlook = await queue(slow, redis).outlook()
    assert outlook.pending == 1 and outlook.last_status == "timeout"  # the block stays noted
    assert await analyzer.seconds_until_due() > 0  # retried later, not in a tight loop
