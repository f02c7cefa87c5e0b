"""Two processors racing on a block whose run writes calibration solutions (as the calibrate
stage does: sidecars under cal/<kind>/ and the stage's outputs and summary): the solutions are
registered once, by the one run that committed; a late chunk's re-run supersedes them."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from dsa110d.config import Config
from dsa110d.services.processor import MSProcessingHandler
from dsa110d.state.blocks import ChunkRecord
from dsa110d.state.calibration import unix_to_mjd
from dsa110d.state.connection import Redis
from tests.conftest import make_config
from tests.helpers.calrecords import sidecar, stage_sidecar

pytestmark = pytest.mark.anyio

BLOCK_START = 1773986400.0  # 2026-03-20T06:00:00 UTC


class CalibratingProcessor(MSProcessingHandler):
    """The processor with its worker replaced by what the calibrate stage leaves in the
    staging directory (the stage itself is the cal branch's): one bandpass and one gain
    solution per run, named by block and version as a solver naming them uniquely would."""

    runs: list[tuple[str, int]]
    list_tables = True

    async def calibrate(self, func: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """The worker: ``func`` is the block job, its arguments read by name."""
        job = inspect.signature(func).bind(*args, **kwargs).arguments
        block_id, version, staging = job["block_id"], job["version"], Path(job["staging"])
        self.runs.append((block_id, version))
        await anyio.sleep(0.2)  # a run takes time: the other processor tries meanwhile
        start = unix_to_mjd(self.plan.block_by_id(block_id).start)
        outputs, ids = {}, {}
        for kind in ("bandpass", "gains"):
            doc = sidecar(f"{kind}-{block_id}-v{version}", kind, start, block_id=block_id,
                          block_version=version)  # fmt: skip
            relative = await anyio.to_thread.run_sync(stage_sidecar, staging, doc)
            outputs[f"cal_{kind}"] = relative
            if self.list_tables:  # only what a stage lists among its outputs is published
                outputs[f"cal_{kind}_table"] = str(Path(relative).parent / doc["table"])
            ids[f"cal_{kind}_id"] = doc["solution_id"]
        summary = {"cal_status": "ok", **ids}
        return [{"stage": "calibrate", "status": "ok", "outputs": outputs, "summary": summary,
                 "message": ""}]  # fmt: skip


def _processor(cfg: Config, redis: Redis) -> CalibratingProcessor:
    made = CalibratingProcessor(cfg, redis, _not_yet)
    made.run_in_worker = made.calibrate
    made.runs = []
    return made


async def _not_yet(*_: Any) -> Any:
    raise AssertionError("the worker is set once the processor is made")


async def _record(handler: MSProcessingHandler, start: float) -> None:
    set_id = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start))
    path = str(handler.config.paths.ms_dir.absolute() / f"{set_id}.ms")
    chunk = ChunkRecord(set_id, set_id, start, start + 300, 0.7, path)
    await handler._record(chunk)


async def test_racing_processors_register_a_blocks_solutions_once(
    tmp_path: Path, server_url: str, redis: Redis
) -> None:
    cfg = make_config(tmp_path, server_url)
    one, two = _processor(cfg, redis), _processor(cfg, redis)
    await one.start()
    for slot in range(3):
        await _record(one, BLOCK_START + 300 * slot)
    later = time.time() + cfg.services.ms_processor.processing_timeout_sec + 60
    done: list[Any] = []

    async def check(handler: MSProcessingHandler) -> None:
        done.extend(await handler.check_blocks(now=later))

    async with anyio.create_task_group() as tg:
        tg.start_soon(check, one)
        tg.start_soon(check, two)
    block_id = "2026-03-20T06:00:00"
    assert [(o.block_id, o.version) for o in done] == [(block_id, 1)]
    assert sorted(one.runs + two.runs) == [(block_id, 1)]  # one run, by one of them
    registry = one.calibrations
    assert (await registry.counts()) == {
        "bandpass": {"ok": 1, "poor": 0, "superseded": 0},
        "gains": {"ok": 1, "poor": 0, "superseded": 0},
    }
    first = await registry.solution(f"gains-{block_id}-v1")
    assert first is not None and Path(first.path).is_file() and Path(first.table_path).is_dir()
    assert first.table_path.endswith(f"gains-{block_id}-v1.v1.t{first.token}.tab")

    # a late chunk: the other processor re-runs the block as version 2
    await _record(two, BLOCK_START + 900)
    runner = two if not two.runs else one
    (rerun,) = await runner.check_blocks(now=later)
    assert rerun.version == 2
    old = await registry.solution(f"gains-{block_id}-v1")
    assert old is not None and old.superseded_by == f"gains-{block_id}-v2"
    resolved = await registry.resolve(unix_to_mjd(BLOCK_START + 600))
    assert resolved.gains is not None and resolved.gains.solution_id == f"gains-{block_id}-v2"
    assert resolved.bandpass is not None
    assert resolved.bandpass.solution_id == f"bandpass-{block_id}-v2"
    assert (await registry.counts())["gains"] == {"ok": 1, "poor": 0, "superseded": 1}
    assert Path(old.path).is_file()  # kept: the registry still names it, as superseded


async def test_a_table_not_listed_among_the_outputs_is_not_published(
    tmp_path: Path, server_url: str, redis: Redis
) -> None:
    """The contract's outputs name only the sidecars: the table then stays in the staging
    directory and is removed with it, and the registry says so (no table path) rather than
    naming a file that is not there."""
    cfg = make_config(tmp_path, server_url)
    handler = _processor(cfg, redis)
    handler.list_tables = False
    await handler.start()
    await _record(handler, BLOCK_START)
    later = time.time() + cfg.services.ms_processor.processing_timeout_sec + 60
    assert len(await handler.check_blocks(now=later)) == 1
    solution = await handler.calibrations.solution("gains-2026-03-20T06:00:00-v1")
    assert solution is not None and Path(solution.path).is_file()
    assert solution.table_path == ""
    assert list((cfg.paths.results_dir / "cal" / "gains").glob("*.tab")) == []
